//! Tests on a real host: root, libvirtd and the LXC driver. They create containers
//! with the prefix `lxcft<N>-`, each test in its own temporary root, hosts file and
//! libvirt network, and remove all of it when they end, also when they fail.
//! Without root or libvirt they are skipped, except under `CI=true`, where they fail.

mod common;
mod pty;

mod bad_input;
mod cgroups;
mod clone;
mod compat;
mod concurrent;
mod copy;
mod deploy;
mod enter;
mod faults;
mod fleet;
mod hosts;
mod lifecycle;
mod lxcfs;
mod resources;
mod separate;
mod shell;
mod unprivileged;
mod update;
