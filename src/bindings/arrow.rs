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
use arrow_array::ffi::FFI_ArrowArray;
use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::types::{ArrowPrimitiveType, Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, OffsetSizeTrait, PrimitiveArray};
use arrow_schema::ffi::FFI_ArrowSchema;
use arrow_schema::DataType;
use numpy::ndarray::ArrayView2;
use numpy::{Element, PyArray1, PyArray2, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use pyo3_arrow::{PyArray, PyArrayReader};

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
        columns.push(column.clone());
    }
    // float32 (or narrower float) columns stay float32; anything else is read as float64.
    let narrow = fields.iter().all(|f| matches!(f.data_type(), DataType::Float16 | DataType::Float32));
    let values = if narrow {
        side_by_side::<Float32Type>(&columns, table.len())?
    } else {
        side_by_side::<Float64Type>(&columns, table.len())?
    };
    Ok(Some(Rows { values, start: 0, rows: table.len(), cols: columns.len() }))
}

/// Columns (one per feature) cast to `F` and interleaved into one row-major array.
fn side_by_side<F: ArrowPrimitiveType>(columns: &[ArrayRef], rows: usize) -> PyResult<ArrayRef> {
    let cols = columns.len();
    let mut values = vec![F::Native::default(); rows * cols];
    for (j, column) in columns.iter().enumerate() {
        let column = arrow_cast::cast(column, &F::DATA_TYPE).map_err(|e| PyTypeError::new_err(e.to_string()))?;
        for (i, &v) in column.as_primitive::<F>().values().iter().enumerate() {
            values[i * cols + j] = v;
        }
    }
    Ok(std::sync::Arc::new(PrimitiveArray::<F>::from_iter_values(values)))
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

/// Whether the C structure in `capsule` (named `name`) was already released: a producer that
/// hands out the same capsules twice gives structures the first import consumed, which must
/// be refused, never read.
fn released<S>(
    capsule: &Bound<'_, PyCapsule>,
    name: &std::ffi::CStr,
    is_released: impl Fn(&S) -> bool,
) -> PyResult<()> {
    let pointer = capsule.pointer_checked(Some(name))?.cast::<S>();
    // SAFETY: a capsule of this name holds a structure of type `S` (the Arrow PyCapsule
    // interface), alive as long as the capsule; only its release field is read.
    if is_released(unsafe { pointer.as_ref() }) {
        return Err(value_error(format!(
            "the Arrow data was already consumed ({} released): pass the Arrow object itself, not capsules taken from it",
            name.to_string_lossy()
        )));
    }
    Ok(())
}

/// The chunks of an object with `__arrow_c_array__` or `__arrow_c_stream__`.
fn import_chunks(data: &Bound<'_, PyAny>) -> PyResult<Vec<ArrayRef>> {
    if data.hasattr("__arrow_c_array__")? {
        let (schema, array): (Bound<'_, PyCapsule>, Bound<'_, PyCapsule>) =
            data.call_method0("__arrow_c_array__")?.extract()?;
        released::<FFI_ArrowSchema>(&schema, c"arrow_schema", |s| s.release.is_none())?;
        released::<FFI_ArrowArray>(&array, c"arrow_array", FFI_ArrowArray::is_released)?;
        return Ok(vec![PyArray::from_arrow_pycapsule(&schema, &array)?.into_inner().0]);
    }
    if data.hasattr("__arrow_c_stream__")? {
        let stream: Bound<'_, PyCapsule> = data.call_method0("__arrow_c_stream__")?.cast_into()?;
        released::<FFI_ArrowArrayStream>(&stream, c"arrow_array_stream", |s| s.release.is_none())?;
        let reader = PyArrayReader::from_arrow_pycapsule(&stream)?.into_reader()?;
        return reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| value_error(format!("could not read the Arrow stream: {e}")));
    }
    Err(PyTypeError::new_err("expected an object with __arrow_c_array__ or __arrow_c_stream__"))
}

/// The rows of an Arrow array, chunked array, table column or table as a 2-D NumPy array.
#[pyfunction]
pub fn arrow_matrix<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let arrays = import_chunks(data)?;
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
