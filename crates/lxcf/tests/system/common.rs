//! The test environment: a config, a root, a hosts file and a network of its own.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub const LXCF: &str = env!("CARGO_BIN_EXE_lxcf");
pub const URI: &str = "lxc:///";

/// What a command printed and how it ended.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(o: Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn ok(self, what: &str) -> Out {
        assert_eq!(self.code, 0, "{what} failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
}

pub fn run(cmd: &mut Command) -> Out {
    Out::from(cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}")))
}

pub fn virsh(args: &[&str]) -> Out {
    run(Command::new("virsh").arg("-q").arg("-c").arg(URI).args(args))
}

/// True where the container tests can run. Under `CI=true` a host that cannot run
/// them is a failure, not a skip.
pub fn host_ready() -> bool {
    let why = if !rustix::process::geteuid().is_root() {
        "not root"
    } else if !Command::new("virsh").args(["-q", "-c", URI, "version"]).output().map(|o| o.status.success()).unwrap_or(false) {
        "libvirtd (LXC driver) not reachable"
    } else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}: CI must run the container tests (scripts/setup-host prepares the host)");
    }
    eprintln!("skipped: {why}");
    false
}

pub struct Opts {
    /// A filesystem (`btrfs`, `xfs`) to loop-mount as the containers' root.
    pub storage: Option<&'static str>,
    pub model: &'static str,
    /// Prefix length of the test subnet.
    pub prefix_len: u8,
    pub forward: &'static str,
    /// Run while no other test of this suite runs (`heavy_lock`).
    pub alone: bool,
    /// The size of the `storage` image (as truncate takes it).
    pub size: &'static str,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts { storage: None, model: "joint", prefix_len: 24, forward: "none", alone: false, size: "2G" }
    }
}

pub struct Env {
    /// First, so that it is unmounted before `dir` is removed (and after the
    /// domains are gone: Drop runs before the fields are dropped).
    #[allow(dead_code)] // held for its Drop
    pub image: Option<Image>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub root: PathBuf,
    pub hosts: PathBuf,
    pub net: String,
    pub gateway: String,
    /// Every container of this environment starts with it.
    pub prefix: String,
    _slot: File,
    _heavy: File,
}

/// Every environment holds this lock shared; one that boots tens of containers at
/// once holds it exclusively, so that it runs alone: on two cores, tens of boots at
/// once would stretch other tests' waits. Taken before the slot: a waiting test
/// holds nothing.
fn heavy_lock(exclusive: bool) -> File {
    std::fs::create_dir_all("/run/lxcf-tests").unwrap();
    let f = File::create("/run/lxcf-tests/heavy.lock").unwrap();
    let op = if exclusive { rustix::fs::FlockOperation::LockExclusive } else { rustix::fs::FlockOperation::LockShared };
    rustix::fs::flock(&f, op).unwrap();
    f
}

/// A slot (0..=249) held for the life of the environment: its number makes the
/// subnet, network, bridge and name prefix unique among tests running at once,
/// in this process or another. flock: released by the kernel if the test dies.
fn take_slot() -> (u32, File) {
    std::fs::create_dir_all("/run/lxcf-tests").unwrap();
    for i in 0..250 {
        let f = File::create(format!("/run/lxcf-tests/slot-{i}.lock")).unwrap();
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            return (i, f);
        }
    }
    panic!("no free test slot");
}

impl Env {
    pub fn new() -> Option<Env> {
        Env::with(Opts::default())
    }

    pub fn with(o: Opts) -> Option<Env> {
        if !host_ready() {
            return None;
        }
        let heavy = heavy_lock(o.alone);
        let (slot, lock) = take_slot();
        let dir = tempfile::Builder::new().prefix("lxcf-test-").tempdir().unwrap();
        let root = dir.path().join("lxc");
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1\tlocalhost\n# a line lxcf must keep\n").unwrap();
        let net = format!("lxcft{slot}");
        let bridge = format!("lxcftb{slot}");
        let subnet = format!("10.213.{slot}.0/{}", o.prefix_len);
        let gateway = format!("10.213.{slot}.1");
        let config = dir.path().join("lxcf.conf");
        std::fs::write(
            &config,
            format!(
                "[Model]\nmodel={}\n[Paths]\nroot={}\nhosts={}\n[Network]\nname={net}\nbridge={bridge}\nsubnet={subnet}\nforward={}\n",
                o.model,
                root.display(),
                hosts.display(),
                o.forward
            ),
        )
        .unwrap();
        let image = o.storage.map(|fs| Image::sized(fs, o.size, dir.path().join(format!("{fs}.img")), &root));
        let env = Env { image, dir, config, root, hosts, net, gateway, prefix: format!("lxcft{slot}-"), _slot: lock, _heavy: heavy };
        // What a killed earlier run may have left in this slot.
        env.cleanup();
        Some(env)
    }

    pub fn name(&self, s: &str) -> String {
        format!("{}{s}", self.prefix)
    }

    pub fn lxcf(&self, args: &[&str]) -> Out {
        run(Command::new(LXCF).env("LXCF_CONFIG", &self.config).args(args))
    }

    /// A command inside the running container as its root, by a client we did not
    /// write: util-linux's `nsenter` into every namespace of its init, then uid and
    /// gid 0. (`virsh lxc-enter-namespace` runs it as the overflow user in a
    /// container with a user namespace: the host's root has no ID there.)
    pub fn exec(&self, name: &str, cmd: &[&str]) -> Out {
        let id = virsh(&["domid", name]).stdout.trim().to_string();
        let init = std::fs::read_to_string(format!("/proc/{id}/task/{id}/children")).unwrap_or_default().trim().to_string();
        if init.is_empty() {
            return Out { code: 1, stdout: String::new(), stderr: format!("{name} is not running (domain id `{id}`)") };
        }
        run(Command::new("nsenter").args(["-t", &init, "-a", "-S", "0", "-G", "0", "--"]).args(cmd))
    }

    /// Waits for systemd in the container to finish booting; its verdict (or, on
    /// timeout, the last answer and error seen). Right after start the namespaces or
    /// systemd's bus may not be there yet, so this asks again rather than `--wait`.
    pub fn booted(&self, name: &str) -> String {
        let until = std::time::Instant::now() + Duration::from_secs(120);
        let mut last = String::new();
        while std::time::Instant::now() < until {
            let o = self.exec(name, &["/bin/systemctl", "is-system-running"]);
            let state = o.stdout.trim().to_string();
            match state.as_str() {
                // Not "offline": that is what systemctl says before systemd is PID 1
                // (lxcf's init prepares the cgroups first).
                "running" | "degraded" | "maintenance" | "stopping" => return state,
                _ => last = format!("{state} {}", o.stderr.trim()),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        format!("(timed out: {last})")
    }

    /// Asserts that systemd reached `running`, with the failed units in the message if not.
    pub fn assert_running(&self, name: &str) {
        let state = self.booted(name);
        if state != "running" {
            let failed = self.exec(name, &["/bin/systemctl", "--failed", "--no-pager", "--plain"]).stdout;
            panic!("{name}: systemd is `{state}`, not running; failed units:\n{failed}");
        }
    }

    /// The domains of this environment, as virsh lists them.
    pub fn domains(&self) -> Vec<String> {
        virsh(&["list", "--all", "--name"])
            .stdout
            .lines()
            .map(str::trim)
            .filter(|n| n.starts_with(&self.prefix))
            .map(String::from)
            .collect()
    }

    /// Everything a command of this environment can change.
    pub fn snapshot(&self) -> (Vec<PathBuf>, String, Vec<String>) {
        let mut files = Vec::new();
        if self.root.exists() {
            for e in walk(&self.root, 2) {
                if !e.to_string_lossy().contains("/.lxcf") {
                    files.push(e);
                }
            }
        }
        files.sort();
        (files, std::fs::read_to_string(&self.hosts).unwrap(), self.domains())
    }

    pub fn hosts_text(&self) -> String {
        std::fs::read_to_string(&self.hosts).unwrap()
    }

    fn cleanup(&self) {
        for d in self.domains() {
            virsh(&["destroy", &d]);
            virsh(&["undefine", &d]);
            remove_cgroups(&d);
        }
        virsh(&["net-destroy", &self.net]);
        virsh(&["net-undefine", &self.net]);
    }
}

/// What `lxcf erase` removes and virsh's undefine does not: the cgroups the
/// container's init made (`/lxcf/NAME` in every hierarchy). Its processes may take a
/// moment to leave them after a destroy.
fn remove_cgroups(name: &str) {
    let mut last = None;
    for _ in 0..25 {
        match remove_cgroups_once(name) {
            Ok(()) => return,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("{name}: cgroups left: {}", last.unwrap());
}

/// The mount points of whole cgroup hierarchies (v1 and v2), from our mountinfo.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mi.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let fstype = right.split(' ').next()?;
            (matches!(fstype, "cgroup" | "cgroup2") && f.get(3) == Some(&"/")).then(|| PathBuf::from(f[4]))
        })
        .collect()
}

fn remove_cgroups_once(name: &str) -> std::io::Result<()> {
    fn rm(dir: &Path) -> std::io::Result<()> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            if e.file_type()?.is_dir() {
                rm(&e.path())?;
            }
        }
        match std::fs::remove_dir(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
    for m in cgroup_mounts() {
        rm(&m.join("lxcf").join(name))?;
    }
    Ok(())
}

impl Drop for Env {
    fn drop(&mut self) {
        self.cleanup();
        // The temporary directory (roots, hosts, config) goes with self.dir.
    }
}

/// A filesystem image made by the test, loop-mounted at `mnt`; unmounted, detached
/// and removed when dropped, also when the test fails.
///
/// libvirtd may run in a mount namespace of its own (scripts/setup-host does so on
/// hosts with hybrid cgroups), where mounts made on the host later reach it only if
/// the host's `/` is a shared mount. Where it does not see the image (a libvirtd
/// started while `/` was private), the image is mounted in libvirtd's namespace
/// too, so that containers rooted on it can start. Containers started meanwhile then
/// keep a copy of that mount until they stop, and with it the loop device, which
/// the kernel detaches afterwards (`losetup -d` of a busy device sets autoclear).
pub struct Image {
    pub file: PathBuf,
    pub mnt: PathBuf,
    dev: String,
    /// libvirtd's pid, where the image had to be mounted in its namespace as well.
    libvirtd: Option<String>,
}

impl Image {
    pub fn new(fs: &str, file: PathBuf, mnt: &Path) -> Image {
        Image::sized(fs, "2G", file, mnt)
    }

    /// An image of `size` (as truncate takes it: 400M).
    pub fn sized(fs: &str, size: &str, file: PathBuf, mnt: &Path) -> Image {
        run(Command::new("truncate").args(["-s", size]).arg(&file)).ok("truncate");
        let mut mkfs = Command::new(format!("mkfs.{fs}"));
        match fs {
            "xfs" => mkfs.args(["-q", "-f", "-m", "reflink=1"]),
            "ext4" => mkfs.args(["-q", "-F"]),
            _ => mkfs.args(["-q", "-f"]),
        };
        run(mkfs.arg(&file)).ok("mkfs");
        let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(&file)).ok("losetup").stdout.trim().to_string();
        let mut img = Image { file, mnt: mnt.to_path_buf(), dev, libvirtd: None };
        std::fs::create_dir_all(mnt).unwrap();
        run(Command::new("mount").arg(&img.dev).arg(mnt)).ok("mount");
        let pid = run(Command::new("pgrep").args(["-xo", "libvirtd"])).stdout.trim().to_string();
        let seen = |pid: &str| {
            let theirs = std::fs::metadata(format!("/proc/{pid}/root{}", mnt.display())).map(|m| std::os::unix::fs::MetadataExt::dev(&m));
            theirs.ok() == std::fs::metadata(mnt).map(|m| std::os::unix::fs::MetadataExt::dev(&m)).ok()
        };
        if !pid.is_empty() && !seen(&pid) {
            run(Command::new("nsenter").args(["-t", &pid, "-m", "--", "mount", &img.dev]).arg(mnt)).ok("mount for libvirtd");
            img.libvirtd = Some(pid);
        }
        img
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        if let Some(pid) = &self.libvirtd {
            run(Command::new("nsenter").args(["-t", pid, "-m", "--", "umount"]).arg(&self.mnt));
        }
        let o = run(Command::new("umount").arg(&self.mnt));
        if o.code != 0 {
            eprintln!("cannot unmount {}: {}", self.mnt.display(), o.stderr);
        }
        run(Command::new("losetup").arg("-d").arg(&self.dev));
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Paths under `dir`, `depth` levels deep.
pub fn walk(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.clone());
            if depth > 1 && e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(walk(&p, depth - 1));
            }
        }
    }
    out
}

pub fn ping(ip: &str) -> bool {
    // Loopback-side only: the address is on a bridge this test made.
    for _ in 0..20 {
        if run(Command::new("ping").args(["-c", "1", "-W", "1", ip])).code == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

/// The `lxcf list --json` entries.
pub fn list_json(env: &Env) -> Vec<serde_json::Value> {
    let o = env.lxcf(&["list", "--json"]).ok("lxcf list --json");
    serde_json::from_str::<Vec<serde_json::Value>>(&o.stdout).expect("list --json is a JSON array")
}

/// The PID of a container's init on the host: the only child of libvirt's controller,
/// whose PID libvirt gives as the domain's ID.
pub fn init_pid(name: &str) -> u32 {
    let id = virsh(&["domid", name]).ok("domid").stdout.trim().to_string();
    let children = std::fs::read_to_string(format!("/proc/{id}/task/{id}/children")).unwrap();
    children.trim().parse().unwrap()
}
