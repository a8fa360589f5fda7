//! Usage counting and billing, request to bill: its workload (the final billing runs and the
//! ledger read) and its checker (the ledger against what clients were answered).

pub mod check;
pub mod workload;
