//! The whole image service over HTTP: its workload (uploaders, pollers, the admin that
//! rotates and revokes keys, probers) and its checkers (jobs complete, thumbnails against an
//! independent reference, auth keys, cross-account reads, availability), with the thumbnails
//! oracle's reference in [`thumbnail_oracle`].

pub mod check;
pub mod thumbnail_oracle;
pub mod workload;
