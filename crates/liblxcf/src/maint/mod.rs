pub mod deploy;
pub mod merge;
pub mod update;
