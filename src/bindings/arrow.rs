//! Arrow input: any object with `__arrow_c_array__` or `__arrow_c_stream__` (pyarrow arrays,
//! chunked arrays and table columns, polars series, ...) becomes one row-major NumPy matrix,
//! read through the Arrow C data interface (`pyo3-arrow`).
//!
//! - One chunk of fixed-size lists (or equal-length lists) of float32/float64 without nulls is
//!   borrowed: the NumPy array views the Arrow values buffer and keeps it alive.
//! - Several chunks are gathered once; other numeric value types are cast once (float16 to
//!   float32, integers to float64).
//! - A table (a stream of structs) with one column uses that column; with several numeric
//!   columns, each column is a feature (one copy).
//! - Nulls and ragged rows are a ValueError naming the first offending row.

use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, OffsetSizeTrait};
use arrow_schema::DataType;
use numpy::ndarray::ArrayView2;
use numpy::{Element, PyArray1, PyArray2, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3_arrow::input::AnyArray;

/// Keeps the Arrow data behind a borrowing NumPy array alive.
#[pyclass(frozen)]
struct ArrowValues {
    _array: ArrayRef,
}

/// One chunk as a contiguous `rows × cols` run of values inside `values` (a float array).
struct Rows {
    values: ArrayRef,
    start: usize,
    rows: usize,
    cols: usize,
}

fn value_error(message: String) -> PyErr {
    PyValueError::new_err(message)
}

/// The first null in `array` (logical nulls), if any.
fn first_null(array: &dyn Array) -> Option<usize> {
    array.logical_nulls().filter(|n| n.null_count() > 0).and_then(|n| n.iter().position(|valid| !valid))
}

/// The values of a list-typed chunk as float32 or float64, casting other numeric types.
fn float_values(values: &ArrayRef) -> PyResult<ArrayRef> {
    let target = match values.data_type() {
        DataType::Float32 | DataType::Float64 => return Ok(values.clone()),
        DataType::Float16 => DataType::Float32,
        t if t.is_integer() => DataType::Float64,
        t => return Err(PyTypeError::new_err(format!("Arrow rows must hold numbers; got values of type {t}"))),
    };
    arrow_cast::cast(values, &target).map_err(|e| PyTypeError::new_err(format!("cannot convert Arrow values: {e}")))
}

/// Rows of a (large) list chunk, which must all have the same length.
fn list_rows<O: OffsetSizeTrait>(chunk: &ArrayRef, first_row: usize) -> PyResult<Rows> {
    let list = chunk.as_list::<O>();
    if let Some(row) = first_null(list) {
        return Err(value_error(format!("row {} is null; nulls are not allowed", first_row + row)));
    }
    let offsets = list.value_offsets();
    let cols = if list.is_empty() { 0 } else { (offsets[1] - offsets[0]).as_usize() };
    for (row, pair) in offsets.windows(2).enumerate() {
        let length = (pair[1] - pair[0]).as_usize();
        if length != cols {
            return Err(value_error(format!(
                "row {} has {length} values but row {first_row} has {cols}: rows must have equal lengths",
                first_row + row
            )));
        }
    }
    Ok(Rows { values: float_values(list.values())?, start: offsets[0].as_usize(), rows: list.len(), cols })
}

fn chunk_rows(chunk: &ArrayRef, first_row: usize) -> PyResult<Rows> {
    match chunk.data_type() {
        DataType::FixedSizeList(_, _) => {
            let list = chunk.as_fixed_size_list();
            if let Some(row) = first_null(list) {
                return Err(value_error(format!("row {} is null; nulls are not allowed", first_row + row)));
            }
            let cols = list.value_length() as usize;
            let start = if list.is_empty() { 0 } else { list.value_offset(0) as usize };
            Ok(Rows { values: float_values(list.values())?, start, rows: list.len(), cols })
        }
        DataType::List(_) => list_rows::<i32>(chunk, first_row),
        DataType::LargeList(_) => list_rows::<i64>(chunk, first_row),
        other => Err(PyTypeError::new_err(format!(
            "an Arrow matrix needs one list or fixed-size list of numbers per row; got {other}"
        ))),
    }
}

/// A stream of structs (a table): its only column, or its numeric columns side by side.
fn table_chunk(chunk: &ArrayRef, first_row: usize) -> PyResult<Option<Rows>> {
    let DataType::Struct(fields) = chunk.data_type() else { return Ok(None) };
    let table = chunk.as_struct();
    if fields.len() == 1 {
        return chunk_rows(table.column(0), first_row).map(Some);
    }
    let mut columns = Vec::with_capacity(fields.len());
    for (field, column) in fields.iter().zip(table.columns()) {
        if !(field.data_type().is_integer() || field.data_type().is_floating()) {
            return Err(PyTypeError::new_err(format!(
                "table column {:?} is {}: pass the column that holds the vectors, or a table of numeric columns",
                field.name(),
                field.data_type()
            )));
        }
        if let Some(row) = first_null(column.as_ref()) {
            return Err(value_error(format!(
                "row {} of column {:?} is null; nulls are not allowed",
                first_row + row,
                field.name()
            )));
        }
        let column = arrow_cast::cast(column, &DataType::Float64).map_err(|e| PyTypeError::new_err(e.to_string()))?;
        columns.push(column);
    }
    let (rows, cols) = (table.len(), columns.len());
    let mut values = vec![0.0f64; rows * cols];
    for (j, column) in columns.iter().enumerate() {
        for (i, &v) in column.as_primitive::<Float64Type>().values().iter().enumerate() {
            values[i * cols + j] = v;
        }
    }
    Ok(Some(Rows { values: std::sync::Arc::new(arrow_array::Float64Array::from(values)), start: 0, rows, cols }))
}

/// The float values of `rows`, checked for nulls.
fn slice_of<F: ArrowPrimitiveType>(rows: &Rows, first_row: usize) -> PyResult<&[F::Native]> {
    let end = rows.start + rows.rows * rows.cols;
    let window = rows.values.slice(rows.start, rows.rows * rows.cols);
    if let Some(i) = first_null(window.as_ref()) {
        return Err(value_error(format!(
            "row {} holds a null value; nulls are not allowed",
            first_row + i / rows.cols.max(1)
        )));
    }
    Ok(&rows.values.as_primitive::<F>().values()[rows.start..end])
}

fn to_numpy<'py, F>(py: Python<'py>, chunks: &[Rows]) -> PyResult<Bound<'py, PyAny>>
where
    F: ArrowPrimitiveType,
    F::Native: Element,
{
    let cols = chunks[0].cols;
    let total: usize = chunks.iter().map(|c| c.rows).sum();
    if let [only] = chunks {
        // One chunk: a NumPy view of the Arrow buffer, read-only, keeping the Arrow array alive.
        let values = slice_of::<F>(only, 0)?;
        let view = ArrayView2::from_shape((only.rows, cols), values).map_err(|e| value_error(e.to_string()))?;
        let owner = Bound::new(py, ArrowValues { _array: only.values.clone() })?;
        // SAFETY: `owner` holds the Arrow array whose buffer `view` points into, and the
        // NumPy array keeps `owner` as its base object; the data is never written through it.
        let array = unsafe { PyArray2::borrow_from_array(&view, owner.into_any()) };
        array.call_method1("setflags", (false,))?;
        return Ok(array.into_any());
    }
    let mut gathered = Vec::with_capacity(total * cols);
    let mut first_row = 0;
    for chunk in chunks {
        gathered.extend_from_slice(slice_of::<F>(chunk, first_row)?);
        first_row += chunk.rows;
    }
    Ok(PyArray1::from_vec(py, gathered).reshape([total, cols])?.into_any())
}

/// The rows of an Arrow array, chunked array, table column or table as a 2-D NumPy array.
#[pyfunction]
pub fn arrow_matrix<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let input: AnyArray = data.extract()?;
    let (arrays, _field) = input.into_chunked_array()?.into_inner();
    let mut chunks: Vec<Rows> = Vec::with_capacity(arrays.len());
    let mut first_row = 0;
    for array in arrays.iter().filter(|a| !a.is_empty()) {
        let rows = match table_chunk(array, first_row)? {
            Some(rows) => rows,
            None => chunk_rows(array, first_row)?,
        };
        if let Some(first) = chunks.first().filter(|first| first.cols != rows.cols) {
            return Err(value_error(format!(
                "row {first_row} has {} values but row 0 has {}: rows must have equal lengths",
                rows.cols, first.cols
            )));
        }
        first_row += rows.rows;
        chunks.push(rows);
    }
    let Some(first) = chunks.first() else { return Err(value_error("the Arrow data has no rows".into())) };
    if first.cols == 0 {
        return Err(value_error("the Arrow rows have no values (0 features)".into()));
    }
    // Mixed float widths across chunks are widened to float64.
    if chunks.iter().all(|c| c.values.data_type() == &DataType::Float32) {
        to_numpy::<Float32Type>(py, &chunks)
    } else {
        for chunk in &mut chunks {
            if chunk.values.data_type() != &DataType::Float64 {
                let window = chunk.values.slice(chunk.start, chunk.rows * chunk.cols);
                chunk.values =
                    arrow_cast::cast(&window, &DataType::Float64).map_err(|e| PyTypeError::new_err(e.to_string()))?;
                chunk.start = 0;
            }
        }
        to_numpy::<Float64Type>(py, &chunks)
    }
}
