//! `lxcf sysgen`: containers built from the host, defined with their settings, started.

use std::sync::Arc;

use super::intent::Intent;
use super::{Container, Hold, State, Undo};
use crate::error::Result;
use crate::fault::crash_point;
use crate::name::Name;
use crate::net::Hosts;
use crate::resources::{self, Request, Settings};
use crate::rootfs;
use crate::rootfs::copy::{Control, Progress};
use crate::rootfs::layout::{self, Model};
use crate::runtime::{Interface, Spec};
use crate::Lxcf;

/// How new containers are made: `lxcf sysgen [--model M] [--cpurate ...]`.
#[derive(Debug, Clone, Default)]
pub struct Create {
    /// The configured model unless given.
    pub model: Option<Model>,
    /// Resource settings, as the resource commands take them; all are checked
    /// before anything is built.
    pub resources: Vec<Request>,
    /// Without a user namespace (`--privileged`); the configured default unless given.
    pub privileged: Option<bool>,
}

impl Lxcf {
    /// Creates the containers `names` and starts them, `jobs` at a time; `each` hears
    /// of every one as it finishes. A failed one leaves nothing behind and does not
    /// stop the others. `Err`: nothing was done (a bad setting, host limits).
    pub fn sysgen(
        &self,
        names: &[Name],
        c: &Create,
        jobs: usize,
        each: &(dyn Fn(&Name, &Result<Container>) + Sync),
    ) -> Result<Vec<(Name, Result<Container>)>> {
        let _update = self.enter(Hold::Shared)?;
        let mut settings = Settings::default();
        for s in resources::plan(&c.resources, &Settings::default(), &*self.host)? {
            settings.apply(&s);
        }
        self.check_limits(&names.iter().map(|n| n.as_str()).collect::<Vec<_>>())?;
        Ok(self.each(names, jobs, each, |n| self.sysgen_one(n, c.model, c.privileged.unwrap_or(self.cfg.privileged), &settings)))
    }

    /// The network interface of a new container with address `ip`.
    pub(crate) fn interface(&self, ip: std::net::Ipv4Addr) -> Interface {
        let n = &self.cfg.network;
        Interface { network: n.name.clone(), ip, prefix_len: n.subnet.prefix_len(), gateway: n.gateway, mac: None }
    }

    fn sysgen_one(&self, name: &str, model: Option<Model>, privileged: bool, resources: &Settings) -> Result<Container> {
        let model = model.unwrap_or(self.cfg.model);
        let hosts = Hosts::new(&self.cfg.hosts);
        let mut undo = Undo::default();
        let r = self.reserve(&hosts, name, Intent::Sysgen, privileged, &mut undo)?;
        tracing::info!("{name}: address {}, building a {model} root in {}", r.ip, r.partial.display());
        let t = std::time::Instant::now();
        let progress = Arc::new(Progress::default());
        let shown = self.report.copying(&format!("{name}: building its root"), progress.clone());
        let ctl = Control { progress: Some(&progress), ..Default::default() };
        // Registered first: a panic in the copy unwinds through the undo too.
        let renamed = self.undo_root(&r, &mut undo);
        let built = rootfs::create(model, &self.cfg.source, &r.partial, &[&self.cfg.root], &ctl)?;
        drop(shown);
        crash_point("sysgen:built");
        let (backend, stats) = (built.backend, built.stats);
        tracing::info!(
            "{name}: root built in {:.2} s ({}{} files, {} MiB copied, {} by reflink)",
            t.elapsed().as_secs_f64(),
            if built.snapshot { "a trimmed btrfs snapshot of the source; " } else { "" },
            stats.files,
            stats.bytes >> 20,
            stats.reflinked
        );
        let meta = self.meta(model, &r);
        let spec = Spec {
            name: name.into(),
            uuid: uuid::Uuid::new_v4(),
            meta: meta.clone(),
            mounts: layout::mounts(model, &self.cfg.source),
            interfaces: vec![self.interface(r.ip)],
            resources: resources.clone(),
            dropped_caps: crate::runtime::DROPPED_CAPS.iter().map(|c| c.to_string()).collect(),
            native: None,
        };
        self.install(name, &r, &renamed, &spec, undo)?;
        Ok(Container { name: name.into(), state: State::Running, autostart: false, storage: Some(backend), meta })
    }
}
