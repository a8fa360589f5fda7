//! sim
pub mod lincheck;
