//! `lxcf clone SRC NEW`: a new container from a stopped one.
//!
//! NEW is reserved like a container from `sysgen` (name, address, hosts line), its
//! root is a snapshot of SRC's where SRC is a btrfs subvolume, else a faithful copy
//! ([`storage::clone_root`]); its definition is SRC's spec with a new name, UUID,
//! root, address and MAC, so the model, every resource setting and whatever the
//! runtime keeps for SRC come along; then it gets its own identity and starts, as
//! after `sysgen`.

use std::path::Path;
use std::sync::Arc;

use super::intent::Intent;
use super::{Container, Hold, State, Undo};
use crate::error::{Error, Result};
use crate::fault::crash_point;
use crate::name::Name;
use crate::net::Hosts;
use crate::rootfs::copy::{Control, Progress};
use crate::rootfs::scoped::Root;
use crate::rootfs::storage::{self, Cloned};
use crate::Lxcf;

impl Lxcf {
    /// Clones the stopped container `src` as `new` and starts `new`.
    pub fn clone_container(&self, src: &Name, new: &Name) -> Result<Container> {
        let _update = self.enter(Hold::Shared)?;
        // NEW starts: the same check as sysgen and start make.
        self.check_limits(&[new.as_str()])?;
        self.lxcf_instance(src)?;
        if src == new {
            return Err(Error::Taken { name: new.to_string(), by: "it is the container being cloned".into() });
        }
        // SRC's lock: no `erase`, `start` or change of it while it is copied. Its state
        // is read under the lock: a start between a read and the lock would copy a
        // running container.
        let _src_lock = if self.cfg.root.exists() { Some(self.name_lock(src)?) } else { None };
        let (i, meta) = self.lxcf_instance(src)?;
        if i.state.is_active() {
            return Err(Error::Running(src.to_string()));
        }
        if !meta.root.is_dir() {
            return Err(Error::RootMissing { name: src.to_string(), dir: meta.root });
        }
        let mut spec = self.rt.spec(src)?;
        let hosts = Hosts::new(&self.cfg.hosts);
        let mut undo = Undo::default();
        let r = self.reserve(&hosts, new, Intent::Clone { src: src.to_string() }, meta.ids.is_none(), &mut undo)?;

        let t = std::time::Instant::now();
        let progress = Arc::new(Progress::default());
        let shown = self.report.copying(&format!("{new}: copying {src}'s root"), progress.clone());
        // Registered first: a panic in the copy unwinds through the undo too.
        let renamed = self.undo_root(&r, &mut undo);
        let (backend, how) = storage::clone_root(&meta.root, &r.partial, &Control { progress: Some(&progress), ..Default::default() })?;
        drop(shown);
        crash_point("clone:copied");
        match how {
            Cloned::Snapshot => tracing::info!("{new}: snapshot of {src} in {:.2} s", t.elapsed().as_secs_f64()),
            Cloned::Copy(s) => tracing::info!(
                "{new}: copy of {src} in {:.2} s ({} files, {} MiB, {} by reflink)",
                t.elapsed().as_secs_f64(),
                s.files,
                s.bytes >> 20,
                s.reflinked
            ),
        }
        // The snapshot or copy holds what SRC's own boots made that is not NEW's.
        let root = Root::open(&r.partial)?;
        root.remove(Path::new("/var/lib/systemd/random-seed"))?;
        drop(root);

        spec.name = new.to_string();
        spec.uuid = uuid::Uuid::new_v4();
        spec.meta = self.meta(meta.model, &r);
        spec.interfaces = vec![self.interface(r.ip)];
        self.install(new, &r, &renamed, &spec, undo)?;
        Ok(Container { name: new.to_string(), state: State::Running, autostart: false, storage: Some(backend), meta: spec.meta })
    }
}
