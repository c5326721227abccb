//! Store benchmark: commit vs `tar -c | b3sum`, peak RSS of commit, verify throughput,
//! restore vs `tar -x` (and, apart, the removal of the old upper from the trash). Prints a
//! table.
//!
//! `cargo bench -p karapace-store --bench store_bench`
//! Size: `KARAPACE_BENCH_FILES` small files of 1–8 KiB (default 50000) and
//! `KARAPACE_BENCH_BIG` files of 10 MiB (default 20). Restore rounds (each beside its own
//! `tar -x`, medians reported): `KARAPACE_BENCH_RESTORE_ROUNDS` (default 1). Scratch space: `KARAPACE_BENCH_DIR`
//! (default the system temp dir).

use karapace_store::{EnvMetadata, EnvState, LayerKind, Store};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

fn generate(upper: &Path, small: usize, big: usize) -> u64 {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut total = 0u64;
    let mut buf = vec![0u8; 8192];
    for i in 0..small {
        let dir = upper.join(format!("src/d{:03}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&dir).unwrap();
        }
        let size = 1024 + usize::try_from(rng.next() % 7169).unwrap();
        rng.fill(&mut buf[..size]);
        fs::write(dir.join(format!("f{i}.txt")), &buf[..size]).unwrap();
        total += size as u64;
    }
    let mut big_buf = vec![0u8; 10 * 1024 * 1024];
    fs::create_dir_all(upper.join("big")).unwrap();
    for i in 0..big {
        rng.fill(&mut big_buf);
        fs::write(upper.join(format!("big/blob{i}.bin")), &big_buf).unwrap();
        total += big_buf.len() as u64;
    }
    total
}

fn sh(cmd: &str) -> Duration {
    let t = Instant::now();
    let st = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{cmd} failed");
    t.elapsed()
}

fn best<F: FnMut() -> Duration>(n: usize, mut f: F) -> Duration {
    (0..n).map(|_| f()).min().unwrap()
}

fn vm_hwm_kib() -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Child mode: commit and report peak RSS.
fn child_commit(root: &str, env_id: &str) {
    let s = Store::open_or_init(Path::new(root)).unwrap();
    let h = s.commit(env_id).unwrap();
    println!("{h} {}", vm_hwm_kib());
}

fn run_child_commit(root: &Path, env_id: &str) -> (Duration, String, u64) {
    let t = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child-commit", root.to_str().unwrap(), env_id])
        .output()
        .unwrap();
    let el = t.elapsed();
    assert!(
        out.status.success(),
        "child commit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = text.split_whitespace();
    let hash = it.next().unwrap().to_string();
    let hwm = it.next().unwrap().parse().unwrap();
    (el, hash, hwm)
}

/// Each round's restore time over its `tar -x` time.
fn restores_vs(restores: &[Duration], tars: &[Duration]) -> Vec<f64> {
    restores
        .iter()
        .zip(tars)
        .map(|(r, t)| r.as_secs_f64() / t.as_secs_f64())
        .collect()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[allow(clippy::too_many_lines)] // a linear script reads best in one piece
#[allow(clippy::cast_precision_loss)] // human-readable figures
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child-commit") {
        child_commit(&args[2], &args[3]);
        return;
    }
    let small = env_usize("KARAPACE_BENCH_FILES", 50_000);
    let big = env_usize("KARAPACE_BENCH_BIG", 20);
    let scratch: PathBuf =
        std::env::var_os("KARAPACE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let tmp = tempfile::tempdir_in(&scratch).unwrap();
    let root = tmp.path().join("store");
    let store = Store::open_or_init(&root).unwrap();
    let base_src = tmp.path().join("base");
    fs::create_dir_all(base_src.join("etc")).unwrap();
    fs::write(base_src.join("etc/os-release"), "ID=bench\n").unwrap();
    let base = store
        .import_layer_dir(&base_src, LayerKind::Base, None)
        .unwrap()
        .hash;
    let env_id = blake3::hash(b"bench").to_hex().to_string();
    store
        .create_env(EnvMetadata {
            env_id: env_id.clone().parse().unwrap(),
            short_id: String::new(),
            name: Some("bench".into()),
            state: EnvState::Built,
            manifest_hash: "0".repeat(64),
            base_layer: base,
            dependency_layers: vec![],
            policy_layer: None,
            created_at: String::new(),
            updated_at: String::new(),
            checksum: String::new(),
        })
        .unwrap();
    let upper = store.env_upper(&env_id);
    eprintln!(
        "generating {small} small files + {big} x 10 MiB in {} ...",
        upper.display()
    );
    let total = generate(&upper, small, big);
    let up = upper.display().to_string();
    // Warm the page cache for both sides.
    sh(&format!("sync; tar -c -C '{up}' . > /dev/null"));

    let tar_b3 = best(2, || sh(&format!("tar -c -C '{up}' . | b3sum > /dev/null")));
    let mut commits = Vec::new();
    let mut hwm = 0;
    let mut snap = String::new();
    for _ in 0..2 {
        let (d, h, m) = run_child_commit(&root, &env_id);
        commits.push(d);
        hwm = hwm.max(m);
        snap = h;
    }
    let commit = *commits.iter().min().unwrap();

    let _ = store.verify().unwrap();
    let t = Instant::now();
    let rep = store.verify().unwrap();
    let vt = t.elapsed();
    assert!(rep.is_clean());
    let gbps = rep.bytes_hashed as f64 / vt.as_secs_f64() / 1e9;

    let tar_hash = store
        .snapshots(&env_id)
        .unwrap()
        .last()
        .unwrap()
        .tar_hash
        .clone();
    let obj = root
        .join("store/objects")
        .join(&tar_hash[..2])
        .join(&tar_hash);
    // Each round: `tar -x` into a fresh directory, then restore, each right after the removal
    // of a tree as large as the one it writes, and after a `sync`. Both sides start after a
    // removal because creating tens of thousands of files shortly after deleting as many makes
    // ext4's inode allocator skip over recently freed inodes (seen with perf on the benchmark
    // machine: `recently_deleted` dominating), which would distort whichever side ran alone
    // after one; and removing what `tar -x` wrote keeps a tmpfs from growing by the tree's size
    // twice a round, which slowed later rounds of both sides. The old upper restore leaves in
    // the trash is removed after each round, as `karapace restore` does after printing its
    // result, and timed apart.
    let rounds = env_usize("KARAPACE_BENCH_RESTORE_ROUNDS", 1).max(1);
    let (mut tar_xs, mut tar_x_syncs, mut restores, mut emptyings) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let xdir = tmp.path().join("x");
    let remove = |dir: &Path| {
        if dir.exists() {
            fs::remove_dir_all(dir).unwrap();
        }
    };
    // Unmeasured: so that round 0's `tar -x` too starts after a removal.
    fs::create_dir(&xdir).unwrap();
    sh(&format!(
        "tar -x -f '{}' -C '{}'",
        obj.display(),
        xdir.display()
    ));
    for round in 0..rounds {
        remove(&xdir);
        fs::create_dir(&xdir).unwrap();
        sh("sync");
        tar_xs.push(sh(&format!(
            "tar -x -f '{}' -C '{}'",
            obj.display(),
            xdir.display()
        )));
        remove(&xdir);
        sh("sync");
        let t = Instant::now();
        store.restore(&env_id, &snap).unwrap();
        restores.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(store.empty_trash().unwrap(), 1);
        emptyings.push(t.elapsed());
        // `tar -x` never makes what it wrote durable; restore must (`syncfs` before the swap).
        // The same with a `syncfs` afterwards shows what that costs on a disk.
        fs::create_dir(&xdir).unwrap();
        sh("sync");
        tar_x_syncs.push(sh(&format!(
            "tar -x -f '{}' -C '{d}' && sync -f '{d}'",
            obj.display(),
            d = xdir.display()
        )));
        eprintln!(
            "round {round}: tar -x {}, restore {}, tar -x && sync -f {}",
            secs(tar_xs[round]),
            secs(restores[round]),
            secs(tar_x_syncs[round])
        );
    }
    // Each round's ratio from that round's pair, before the lists are sorted for their medians.
    let ratios = {
        let mut r: Vec<f64> = restores_vs(&restores, &tar_xs);
        r.sort_by(f64::total_cmp);
        r
    };
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (tar_x, tar_x_sync, restore, emptied) = (
        median(&mut tar_xs),
        median(&mut tar_x_syncs),
        median(&mut restores),
        median(&mut emptyings),
    );

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!();
    println!(
        "karapace-store benchmark: {small} files of 1-8 KiB + {big} files of 10 MiB = {:.0} MiB, {cpus} CPUs",
        total as f64 / 1_048_576.0
    );
    println!("| measurement | karapace | baseline | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| commit (pack+hash+write+fsync) | {} | {} (`tar -c \\| b3sum`) | {:.2}x | <= 1.2x |",
        secs(commit),
        secs(tar_b3),
        ratio(commit, tar_b3)
    );
    println!(
        "| commit peak RSS (child VmHWM) | {:.1} MB | 375 MB (standard tool) | | <= 64 MB |",
        hwm as f64 / 1024.0
    );
    println!(
        "| verify-store, warm cache | {:.2} GB/s ({} objects, {:.0} MB in {}) | | | >= 2 GB/s |",
        gbps,
        rep.objects,
        rep.bytes_hashed as f64 / 1e6,
        secs(vt)
    );
    println!(
        "| restore (verify+unpack+syncfs+swap, old upper to the trash), median of {rounds} | {} | {} (`tar -x`) | {:.2}x (median of the rounds: {}) | <= 1.2x |",
        secs(restore),
        secs(tar_x),
        ratios[ratios.len() / 2],
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| restore, beside `tar -x` + `syncfs` | {} | {} (`tar -x && sync -f`) | {:.2}x | |",
        secs(restore),
        secs(tar_x_sync),
        ratio(restore, tar_x_sync)
    );
    println!(
        "| emptying the trash afterwards (off the critical path) | {} | | | |",
        secs(emptied)
    );
}
