//! lxcf: divide one Linux host into long-lived system containers on libvirt-LXC.
//!
//! Containers are built from the host's own files (the two models of
//! [`layout`]), run as libvirt-LXC domains ([`virt`]) and get an address and a
//! hosts line ([`net`]). [`ops`] holds the commands; the `lxcf` binary only parses
//! arguments and prints.

pub mod batch;
pub mod cgroupfs;
pub mod config;
pub mod copy;
pub mod deploy;
pub mod enter;
pub mod layout;
pub mod limits;
pub mod lock;
pub mod merge;
pub mod name;
pub mod net;
pub mod ops;
pub mod progress;
pub mod resources;
pub mod rootfs;
pub mod scoped;
pub mod status;
pub mod storage;
pub mod tune;
pub mod update;
pub mod virt;
