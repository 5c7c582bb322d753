//! lxcfs's view of a container's own machine (see [`crate::host::lxcfs`]): bound by
//! lxcf's libvirt hook at every start, whoever starts the container; bound again by
//! `lxcf start` when the hook could not, and by `lxcf lxcfs` after lxcfs restarts.

use super::Hold;
use crate::error::{Error, Result, LXCFS_HINT};
use crate::host::lxcfs::View;
use crate::host::HostError;
use crate::name::Name;
use crate::Lxcf;

impl Lxcf {
    /// The view of a container; `None` when it is not running.
    pub(crate) fn view_of(&self, name: &str) -> Result<Option<View>> {
        match self.rt.live(name)? {
            Some(l) => Ok(Some(self.host.lxcfs_view(&l)?)),
            None => Ok(None),
        }
    }

    /// After a start: the view is there (the hook bound it), or lxcf binds it, or the
    /// user is told why the container runs without it. Never fails the start.
    pub(crate) fn view_after_start(&self, name: &str) {
        let live = match self.rt.live(name) {
            Ok(Some(l)) => l,
            _ => return,
        };
        if let Ok(View::On) = self.host.lxcfs_view(&live) {
            return;
        }
        match self.host.lxcfs_bind(&live) {
            Ok(_) => {}
            Err(HostError::LxcfsDown) => {
                self.report.warn(&format!("{name} runs without lxcfs's view of its own machine: lxcfs is not running; {LXCFS_HINT}"))
            }
            Err(e) => self.report.warn(&format!("{name} runs without lxcfs's view of its own machine: {e}")),
        }
    }

    /// `lxcf lxcfs [NAME...]`: binds lxcfs's files into running containers whose
    /// view is not on. Without names: every running lxcf container of the host,
    /// whatever its configuration (lxcfs is the host's; a restart of it leaves all of
    /// them stale). For each: the view it had. Stopped containers get it at their
    /// next start.
    pub fn lxcfs(&self, names: &[Name]) -> Result<Vec<(String, Result<View>)>> {
        let _update = self.enter(Hold::Shared)?;
        let named = !names.is_empty();
        let names: Vec<String> = if named {
            names.iter().map(|n| n.to_string()).collect()
        } else {
            self.rt.list()?.into_iter().filter(|i| i.meta.is_some() && i.state.is_active()).map(|i| i.name).collect()
        };
        let mut out = Vec::new();
        for n in names {
            let r = (|| {
                if named {
                    self.lxcf_instance(&n)?;
                }
                let live = self.rt.live(&n)?.ok_or_else(|| Error::NotRunning(n.clone()))?;
                let had = self.host.lxcfs_view(&live)?;
                if had != View::On {
                    self.host.lxcfs_bind(&live)?;
                }
                Ok(had)
            })();
            // lxcfs down fails every container alike: say it once.
            if let Err(Error::Host(HostError::LxcfsDown)) = r {
                return Err(HostError::LxcfsDown.into());
            }
            // Stopped meanwhile: nothing to bind.
            if !named && matches!(r, Err(Error::NotRunning(_)) | Err(Error::Host(HostError::NoInit(_)))) {
                continue;
            }
            out.push((n, r));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::container::tests::env;
    use crate::host::lxcfs::View;
    use crate::name::Name;

    fn names(n: &[&str]) -> Vec<Name> {
        n.iter().map(|s| Name::new(*s).unwrap()).collect()
    }

    #[test]
    fn a_start_binds_the_view_and_lxcfs_rebinds_stale_ones() {
        let e = env();
        e.fake.state().lxcfs = Some(1);
        e.sysgen("v1").unwrap();
        assert_eq!(e.lx.view_of("v1").unwrap(), Some(View::On));
        // lxcfs restarted: the container's files are the old one's until rebound.
        e.fake.state().lxcfs = Some(2);
        assert_eq!(e.lx.view_of("v1").unwrap(), Some(View::Stale));
        // `lxcf check` finds it, and --repair binds it again.
        let found: Vec<_> = e.lx.check(false).unwrap().findings.into_iter().map(|f| (f.check, f.name, f.repaired)).collect();
        assert_eq!(found, [("lxcfs-view", "v1".to_string(), false)]);
        assert!(e.lx.check(true).unwrap().findings.iter().all(|f| f.repaired));
        assert_eq!(e.lx.view_of("v1").unwrap(), Some(View::On));
        assert!(e.lx.check(false).unwrap().findings.is_empty());
        e.fake.state().lxcfs = Some(3);
        let r = e.lx.lxcfs(&[]).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(*r[0].1.as_ref().unwrap(), View::Stale);
        assert_eq!(e.lx.view_of("v1").unwrap(), Some(View::On));
        // Already on: nothing bound again.
        let before = e.fake.state().calls.iter().filter(|c| c.1 == "lxcfs").count();
        e.lx.lxcfs(&names(&["v1"])).unwrap();
        assert_eq!(e.fake.state().calls.iter().filter(|c| c.1 == "lxcfs").count(), before);
    }

    #[test]
    fn without_lxcfs_a_container_starts_with_a_warning() {
        let e = env();
        e.sysgen("v2").unwrap();
        assert_eq!(e.lx.view_of("v2").unwrap(), Some(View::Off));
        // No lxcfs on this host: not a finding.
        assert!(e.lx.check(false).unwrap().findings.is_empty());
        let err = e.lx.lxcfs(&[]).unwrap_err();
        assert!(err.to_string().contains("lxcfs is not running"), "{err}");
        assert!(err.hint().unwrap().contains("lxcf lxcfs"));
        // A stopped container has no view to give.
        e.stop("v2").unwrap();
        assert_eq!(e.lx.view_of("v2").unwrap(), None);
        e.fake.state().lxcfs = Some(1);
        let r = e.lx.lxcfs(&names(&["v2"])).unwrap();
        assert!(r[0].1.is_err());
        e.start("v2").unwrap();
        assert_eq!(e.lx.view_of("v2").unwrap(), Some(View::On));
    }
}
