//! Errors the engine reports instead of panicking.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// An argument is out of its domain; the message names it.
    InvalidArgument(String),
    /// The caller's monitor asked to stop (e.g. Ctrl-C).
    Interrupted,
    /// A callback into the host application failed; the application holds the details.
    Callback,
    /// A backend library failed (e.g. an MLX operation); the message is the library's.
    Backend(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(message) => f.write_str(message),
            Error::Interrupted => f.write_str("interrupted"),
            Error::Callback => f.write_str("a callback failed"),
            Error::Backend(message) => write!(f, "backend failure: {message}"),
        }
    }
}

// Not `std::error::Error`: that leaves room for the conversion below, by which `?` turns a
// backend library's error (an MLX exception in the MLX kernel's crate) into `Backend`.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Self {
        let library = std::any::type_name::<E>().split("::").next().unwrap_or("backend");
        Error::Backend(format!("{library}: {error}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn invalid<T>(message: impl Into<String>) -> Result<T> {
    Err(Error::InvalidArgument(message.into()))
}
