//! pessimist-core: the service under test and its I/O seams.
