//! `lxcf deploy` on real containers: metadata arrives, hostile symlinks planted by
//! a container's root user do not lead outside its root, bad input copies nothing,
//! and a deploy killed at any step leaves every container changed or none.
//! Host files live under /var/tmp, which containers see (their /tmp is mounted afresh).

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::update::fingerprint;

fn host_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir_in("/var/tmp").unwrap()
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 64];
    rustix::fs::lgetxattr(p, name, &mut buf[..]).ok().map(|n| buf[..n].to_vec())
}

#[test]
fn deploy_copies_with_metadata_to_every_container() {
    let Some(env) = Env::new() else { return };
    let names = [env.name("d0"), env.name("d1")];
    for n in &names {
        env.lxcf(&["sysgen", n]).ok("sysgen");
    }
    let src = host_dir("lxcf-test-deploy-");
    let app = src.path().join("app");
    std::fs::create_dir_all(app.join("sub")).unwrap();
    let conf = app.join("app.conf");
    std::fs::write(&conf, "setting=1\n").unwrap();
    std::fs::write(app.join("sub/data"), "data").unwrap();
    symlink("app.conf", app.join("link")).unwrap();
    rustix::fs::chown(&conf, Some(rustix::fs::Uid::from_raw(1234)), Some(rustix::fs::Gid::from_raw(2345))).unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();
    rustix::fs::setxattr(&conf, "user.lxcf", b"yes", rustix::fs::XattrFlags::empty()).unwrap();
    run(std::process::Command::new("touch").args(["-d", "2001-02-03 04:05:06.123456789"]).arg(&conf)).ok("touch");
    let p = conf.to_str().unwrap();

    let o = env.lxcf(&["deploy", p]).ok("deploy a file");
    assert!(names.iter().all(|n| o.stderr.contains(&format!("{n}: {p} deployed"))), "{}", o.stderr);
    let want = std::fs::metadata(&conf).unwrap();
    for n in &names {
        // Seen from inside the running container, by its own tools.
        let st = env.exec(n, &["/usr/bin/stat", "-c", "%u:%g %a %.9Y %s", p]).ok("stat inside");
        assert_eq!(st.stdout.trim(), format!("1234:2345 640 {}.{:09} 10", want.mtime(), want.mtime_nsec()));
        assert_eq!(env.exec(n, &["/bin/cat", p]).ok("cat").stdout, "setting=1\n");
        let inside = env.root.join(n).join(&p[1..]);
        assert_eq!(xattr(&inside, "user.lxcf").as_deref(), Some(&b"yes"[..]));
    }

    // A directory, to one container: merged file by file, symlinks kept as links.
    let o = env.lxcf(&["deploy", "--to", &names[1], "--", app.to_str().unwrap()]).ok("deploy a directory");
    assert!(!o.stderr.contains(&names[0]), "{}", o.stderr);
    let d1 = env.root.join(&names[1]).join(app.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read_to_string(d1.join("sub/data")).unwrap(), "data");
    assert_eq!(std::fs::read_link(d1.join("link")).unwrap(), Path::new("app.conf"));
    assert!(!env.root.join(&names[0]).join(app.strip_prefix("/").unwrap()).join("sub").exists());

    // Bad input: one clear line, nothing copied anywhere. Only the deploy's own
    // tree is compared: the containers' services create private dirs in /var/tmp.
    let inside = |n: &str| env.root.join(n).join(src.path().strip_prefix("/").unwrap());
    let before: Vec<_> = names.iter().map(|n| fingerprint(&inside(n))).collect();
    let snap = env.snapshot();
    let missing = src.path().join("missing");
    let in_tmp = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    for (args, code, says) in [
        (vec!["deploy", missing.to_str().unwrap()], 2, "No such file"),
        (vec!["deploy", "--to", "nope", "--", p], 3, "no container named `nope`"),
        (vec!["deploy", in_tmp.path().to_str().unwrap()], 2, "mounted afresh when the container starts"),
        (vec!["deploy", "/"], 2, "name a file or a directory"),
    ] {
        let o = env.lxcf(&args);
        assert_eq!(o.code, code, "{args:?}: {}", o.stderr);
        assert!(o.stderr.starts_with("lxcf: error: ") && o.stderr.contains(says), "{args:?}: {}", o.stderr);
    }
    assert_eq!(names.iter().map(|n| fingerprint(&inside(n))).collect::<Vec<_>>(), before);
    // A directory where the file goes in one container: no container gets it.
    std::fs::create_dir_all(env.root.join(&names[0]).join(&p[1..]).with_file_name("clash")).unwrap();
    let clash = app.join("clash");
    std::fs::write(&clash, "x").unwrap();
    let before_clash: Vec<_> = names.iter().map(|n| fingerprint(&inside(n))).collect();
    let o = env.lxcf(&["deploy", clash.to_str().unwrap()]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("is a directory in the destination but a file"), "{}", o.stderr);
    assert_eq!(names.iter().map(|n| fingerprint(&inside(n))).collect::<Vec<_>>(), before_clash);
    assert_ne!(before, before_clash);
    assert_eq!(env.snapshot().2, snap.2);

    // No containers at all.
    for n in &names {
        env.lxcf(&["erase", n]).ok("erase");
    }
    let o = env.lxcf(&["deploy", p]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(o.stderr.contains("no containers to deploy to"), "{}", o.stderr);
}

#[test]
fn deploy_through_hostile_symlinks_stays_inside_the_container() {
    let Some(env) = Env::new() else { return };
    let c = env.name("evil");
    env.lxcf(&["sysgen", &c]).ok("sysgen");
    // Only on the host: what the container's root user would like to overwrite.
    let host_only = host_dir("lxcf-test-hostonly-");
    let secret = host_only.path().join("secret");
    std::fs::write(&secret, "host secret").unwrap();
    let src = host_dir("lxcf-test-deploy-");
    let s = src.path();
    for d in ["up", "hd"] {
        std::fs::create_dir_all(s.join(d)).unwrap();
        std::fs::write(s.join(d).join("f"), "deployed").unwrap();
    }
    std::fs::write(s.join("victim"), "deployed").unwrap();
    let host_before = fingerprint(host_only.path());
    assert!(!Path::new("/f").exists());

    // The container's root user plants links to host paths and out of its root.
    let sp = s.to_str().unwrap();
    let plant = format!(
        "mkdir -p {sp} && ln -s {} {sp}/victim && ln -s ../../../../../../.. {sp}/up && ln -s {} {sp}/hd",
        secret.display(),
        host_only.path().display()
    );
    env.exec(&c, &["/bin/sh", "-c", &plant]).ok("plant symlinks inside");

    // The link at the destination is replaced by the file, not written through.
    env.lxcf(&["deploy", s.join("victim").to_str().unwrap()]).ok("deploy over a link");
    assert_eq!(env.exec(&c, &["/bin/cat", &format!("{sp}/victim")]).ok("cat").stdout, "deployed");
    assert_eq!(env.exec(&c, &["/usr/bin/stat", "-c", "%F", &format!("{sp}/victim")]).ok("stat").stdout.trim(), "regular file");

    // `../../..` ends at the container's root, as it does for the container.
    env.lxcf(&["deploy", s.join("up/f").to_str().unwrap()]).ok("deploy through ../..");
    assert_eq!(env.exec(&c, &["/bin/cat", "/f"]).ok("cat /f").stdout, "deployed");
    assert!(env.root.join(&c).join("f").is_file());

    // A link to a host directory resolves inside the container, where it leads
    // nowhere: refused, nothing copied.
    let o = env.lxcf(&["deploy", s.join("hd/f").to_str().unwrap()]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("symlink that leads nowhere"), "{}", o.stderr);

    assert_eq!(fingerprint(host_only.path()), host_before, "nothing on the host changed");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host secret");
    assert!(!Path::new("/f").exists());
}

#[test]
fn a_deploy_killed_at_any_step_changes_every_container_or_none() {
    let Some(env) = Env::new() else { return };
    let names = [env.name("k0"), env.name("k1"), env.name("k2")];
    for n in &names {
        env.lxcf(&["sysgen", n]).ok("sysgen");
    }
    let src = host_dir("lxcf-test-deploy-crash-");
    let app = src.path().join("app");
    std::fs::create_dir_all(app.join("sub")).unwrap();
    let files = ["f1", "f2", "sub/f3"];
    let write = |v: &str| {
        for f in files {
            std::fs::write(app.join(f), v).unwrap();
        }
    };
    // What each container has of the deployed tree (only that: services write elsewhere in /var/tmp).
    let seen = |n: &str| -> Vec<String> {
        let at = env.root.join(n).join(app.strip_prefix("/").unwrap());
        files.iter().map(|f| std::fs::read_to_string(at.join(f)).unwrap_or_default()).collect()
    };
    let deploy = |crash: Option<&str>, steps: Option<&Path>| {
        let mut c = Command::new(LXCF);
        c.env("LXCF_CONFIG", &env.config).args(["deploy", app.to_str().unwrap()]);
        if let Some(s) = crash {
            c.env("LXCF_TEST_CRASH", s);
        }
        if let Some(f) = steps {
            c.env("LXCF_TEST_STEPS", f);
        }
        run(&mut c)
    };

    // v0 everywhere, and the steps a deploy of this tree goes through.
    write("v0");
    let steps_file = env.dir.path().join("deploy-steps");
    deploy(None, Some(&steps_file)).ok("deploy v0");
    let steps: Vec<String> = std::fs::read_to_string(&steps_file).unwrap().lines().map(String::from).collect();
    let mark = steps.iter().position(|s| s == "deploy:commit").unwrap_or_else(|| panic!("no commit mark in {steps:?}"));
    for n in &names {
        assert!(steps.contains(&format!("deploy:staged:{n}")) && steps.contains(&format!("deploy:merge:{n}:1")), "{steps:?}");
    }

    for (i, step) in steps.iter().enumerate() {
        let (old, new) = (format!("v{i}"), format!("v{}", i + 1));
        write(&new);
        let o = deploy(Some(step), None);
        assert_eq!(o.code, -1, "{step}: not killed: {}", o.stderr);
        if i < mark {
            // Before the mark, nothing has reached any container, even before recovery.
            for n in &names {
                assert_eq!(seen(n), [old.as_str(); 3], "{step}: {n}");
            }
        }
        let o = env.lxcf(&["list"]).ok("list");
        let committed = i >= mark;
        let want = if committed { &new } else { &old };
        for n in &names {
            assert_eq!(seen(n), [want.as_str(); 3], "{step}: {n}: {}", o.stderr);
        }
        assert_eq!(o.stderr.contains("an interrupted `lxcf deploy"), committed, "{step}: {}", o.stderr);
        assert!(!env.root.join(".lxcf/deploy").exists(), "{step}: staging left");
        if !committed {
            // Discarded: deployed again for real, so that the next step starts from it.
            deploy(None, None).ok("deploy again");
        }
    }
}
