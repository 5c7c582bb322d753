//! `lxcf clone SRC NEW`: a new container from a stopped one.
//!
//! NEW is reserved like a container from `sysgen` (name, address, hosts line), its
//! root is a snapshot of SRC's where SRC is a btrfs subvolume, else a faithful copy
//! ([`storage::clone_root`]); its domain is SRC's with a new name, UUID, root,
//! address and MAC ([`xml::derive`]), so the model and every resource setting come
//! along; then it gets its own identity and starts, as after `sysgen`.

use std::sync::Arc;

use super::*;
use crate::copy::{Control, Progress};
use crate::progress::Bar;
use crate::storage::Cloned;

/// Clones the stopped container `src` as `new` and starts `new`.
pub fn clone(cfg: &Config, rt: &dyn Runtime, src: &str, new: &str) -> Result<Container> {
    name::validate(new)?;
    let (d, meta) = lxcf_domain(cfg, rt, src)?;
    if src == new {
        return Err(Error::Taken { name: new.into(), by: "it is the container being cloned".into() });
    }
    // SRC's lock: no `erase` of it while it is copied.
    let _src_lock = if cfg.root.exists() { Some(name_lock(cfg, src)?) } else { None };
    if d.state.is_active() {
        return Err(Error::Running(src.into()));
    }
    if !meta.root.is_dir() {
        return Err(Error::RootMissing { name: src.into(), dir: meta.root });
    }
    let src_xml = rt.xml(src)?;
    let hosts = Hosts::new(&cfg.hosts);
    let mut undo = Undo::default();
    let r = reserve(cfg, rt, &hosts, new, &mut undo)?;

    let t = std::time::Instant::now();
    let progress = Arc::new(Progress::default());
    let bar = Bar::show(&format!("{new}: copying {src}'s root"), progress.clone());
    let (backend, how) = storage::clone_root(&meta.root, &r.partial, &Control { progress: Some(&progress), ..Default::default() })?;
    drop(bar);
    let renamed = undo_root(&r, &mut undo);
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
    let root = Root::open(&r.partial).map_err(RootfsError::from)?;
    root.remove(Path::new("/var/lib/systemd/random-seed")).map_err(RootfsError::from)?;
    drop(root);

    let new_meta = Meta { model: meta.model, ip: r.ip, root: r.dir.clone(), network: cfg.network.name.clone(), version: VERSION.into() };
    let xml = xml::derive(&src_xml, new, uuid::Uuid::new_v4(), &new_meta, cfg.network.subnet.prefix_len(), cfg.network.gateway)
        .map_err(|msg| VirtError::Op { op: "derive a domain from", object: src.into(), msg })?;
    install(cfg, rt, new, &r, &renamed, &xml, &[], undo)?;
    Ok(Container { name: new.into(), state: State::Running, autostart: false, storage: Some(backend), meta: new_meta })
}
