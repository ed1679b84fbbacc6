//! The output writer: generations of secret files, committed atomically.
