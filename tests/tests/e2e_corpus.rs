//! Issue 13, item 4: the package lists real users write. Each package gets an environment of
//! its own, built from the local mirror, and a command of it runs inside; one manifest combines
//! them all. As root: every package alone and the combination, and the combination again as a
//! user without a subordinate range (files collapse to the user). As the unprivileged test user
//! (who has a range): the combination.
//!
//! Without the mirror the test says why and passes, except under `CI`.

use std::path::Path;
use std::sync::Mutex;

use karapace_tests::{Karapace, Mirror, TestDir, UserDir, user_exists};

/// A test user without a subordinate id range (`scripts/test-all` creates it).
const NO_RANGE_USER: &str = "kpnorange";

/// A package and a command that shows it works (argv, text its output must contain).
struct Case {
    package: &'static str,
    argv: &'static [&'static str],
    shows: &'static str,
}

const CORPUS: &[Case] = &[
    Case {
        package: "man-db",
        argv: &["man", "--version"],
        shows: "man ",
    },
    Case {
        package: "openssh-server",
        argv: &["sh", "-c", "/usr/sbin/sshd -V 2>&1; true"],
        shows: "OpenSSH_",
    },
    Case {
        package: "postgresql",
        argv: &[
            "sh",
            "-c",
            "ls /usr/lib/postgresql/*/bin/postgres && /usr/lib/postgresql/*/bin/postgres --version && stat -c %U /var/lib/postgresql",
        ],
        shows: "(PostgreSQL)",
    },
    Case {
        package: "nginx",
        argv: &["sh", "-c", "nginx -v 2>&1"],
        shows: "nginx version",
    },
    Case {
        package: "git",
        argv: &["git", "--version"],
        shows: "git version",
    },
    Case {
        package: "python3-pip",
        argv: &["python3", "-m", "pip", "--version"],
        shows: "pip ",
    },
    Case {
        package: "build-essential",
        argv: &[
            "sh",
            "-c",
            "printf 'int main(void){return 42;}' > /tmp/t.c && cc -o /tmp/t /tmp/t.c; /tmp/t; echo status=$?",
        ],
        shows: "status=42",
    },
];

fn manifest(packages: &[&str]) -> String {
    let list: Vec<String> = packages.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "manifest_version = 1\n\n[base]\nimage = \"debian/bookworm\"\n\n[system]\npackages = [{}]\n",
        list.join(", ")
    )
}

/// Builds `cases`' packages as environment `name` (manifest `<project>/<name>/karapace.toml`,
/// owned like `project`, so the lock beside it is the environment's own) and checks each
/// case's command inside.
fn build_and_check(k: &Karapace, project: &Path, name: &str, cases: &[&Case]) {
    use std::os::unix::fs::MetadataExt;
    let packages: Vec<&str> = cases.iter().map(|c| c.package).collect();
    let dir = project.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let manifest_path = dir.join("karapace.toml");
    std::fs::write(&manifest_path, manifest(&packages)).expect("write the manifest");
    let owner = std::fs::metadata(project).expect("stat the project");
    for p in [&dir, &manifest_path] {
        std::os::unix::fs::chown(p, Some(owner.uid()), Some(owner.gid())).expect("chown");
    }
    let manifest_arg = manifest_path.to_string_lossy().into_owned();
    k.ok(&["build", &manifest_arg, "--name", name]);
    for case in cases {
        let out = k.exec(name, case.argv);
        out.assert_success();
        assert!(
            out.stdout_str().contains(case.shows),
            "{} in {name}: expected {:?} in the output of {:?}:\n{}",
            case.package,
            case.shows,
            case.argv,
            out.stdout_str()
        );
    }
}

#[test]
fn popular_packages_build_and_run() {
    let Some(mirror) = Mirror::fixture() else {
        return;
    };
    let all: Vec<&Case> = CORPUS.iter().collect();
    if !nix::unistd::geteuid().is_root() {
        // The unprivileged pass: the combination, as a user with a subordinate range.
        let dir = TestDir::new("corpus-user");
        let k = Karapace::new(&dir).image_server(mirror.file_url());
        build_and_check(&k, &dir.project(), "all", &all);
        return;
    }
    // Root: each package alone, two builds at a time (separate stores, one image cache).
    let dir = TestDir::new("corpus-root");
    let next = Mutex::new(CORPUS.iter());
    std::thread::scope(|s| {
        for worker in 0..2 {
            let (dir, next, mirror) = (&dir, &next, &mirror);
            s.spawn(move || {
                let store = dir.path().join(format!("store-{worker}"));
                let k = Karapace::with_paths(&store, &dir.cache(), &dir.project())
                    .image_server(mirror.file_url());
                // The queue's lock is released inside `take`, before the build starts.
                let take = || next.lock().ok().and_then(|mut it| it.next());
                while let Some(case) = take() {
                    let name = case.package.replace(['-', '.'], "");
                    build_and_check(&k, &dir.project(), &name, &[case]);
                }
            });
        }
    });
    let k = Karapace::new(&dir).image_server(mirror.file_url());
    build_and_check(&k, &dir.project(), "all", &all);

    // A user without a subordinate range: the combination builds, every file the user's
    // (postgresql's setup cannot switch to its user there, so it creates no cluster).
    if !user_exists(NO_RANGE_USER) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must create {NO_RANGE_USER}"
        );
        eprintln!("skipped the user without a range: {NO_RANGE_USER} missing");
        return;
    }
    let home = UserDir::new("corpus", NO_RANGE_USER, &manifest(&[]), None);
    let k = home.karapace(&mirror);
    build_and_check(&k, &home.path.join("project"), "all", &all);
}
