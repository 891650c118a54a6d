//! The programs the harnesses run (PgBouncer, etcd, Patroni, HAProxy, ...),
//! found on this machine or installed from their Debian packages on first use,
//! so `cargo test --all-features` works on a fresh machine of the project's
//! kind (Debian, tests run as root). Elsewhere a missing program is a panic
//! that says which package to install.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

/// Directories searched after `PATH`, in order (Debian puts daemons in sbin
/// directories, which a non-root `PATH` often lacks).
const EXTRA_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];
/// Lock file that serializes installs across test processes (and across
/// checkouts of the project on one machine): apt and dpkg allow one at a time.
const INSTALL_LOCK_FILE: &str = "/tmp/dbretry-apt-install.lock";
/// How long apt waits for a dpkg lock held by someone else (seconds).
const DPKG_LOCK_TIMEOUT_SECS: &str = "600";

/// The path of program `binary`: an absolute path as given, else the first
/// match on `PATH`, in the sbin/bin directories, or in
/// `/usr/lib/postgresql/*/bin` (newest version first). When it is missing and
/// the tests run as root on a machine with `apt-get`, installs Debian package
/// `package` first (`apt-get update` once per process, then `apt-get install
/// -y --no-install-recommends`), one install at a time across threads and
/// processes. Otherwise panics saying what to install.
pub fn require(binary: &str, package: &str) -> PathBuf {
    if let Some(path) = find(binary) {
        return path;
    }
    // One install at a time in this process; the file lock covers the others.
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _in_process = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = find(binary) {
        return path;
    }
    let Some(apt_get) = find("apt-get").filter(|_| is_root()) else {
        panic!(
            "`{binary}` not found on PATH, in {} or /usr/lib/postgresql/*/bin: install the \
             Debian package `{package}` (`apt-get install {package}`, as root) and run the tests \
             again",
            EXTRA_DIRS.join(", ")
        );
    };
    let lock = File::create(INSTALL_LOCK_FILE)
        .unwrap_or_else(|e| panic!("create {INSTALL_LOCK_FILE}: {e}"));
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {INSTALL_LOCK_FILE}: {e}"));
    // Another process may have installed it while we waited for the lock.
    if let Some(path) = find(binary) {
        return path;
    }
    apt_get_update_once(&apt_get);
    let mut install = apt_command(&apt_get);
    install.args(["install", "-y", "--no-install-recommends", package]);
    let output = run(&mut install);
    assert!(
        output.status.success(),
        "installing Debian package `{package}` for `{binary}` failed: {}",
        describe(&install, &output)
    );
    drop(lock);
    find(binary).unwrap_or_else(|| {
        panic!(
            "Debian package `{package}` installed but `{binary}` is still not found: {}",
            describe(&install, &output)
        )
    })
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        let output = Command::new("id").arg("-u").output().expect("run id -u");
        String::from_utf8_lossy(&output.stdout).trim() == "0"
    })
}

/// `apt-get update`, the first time an install is needed in this process (the
/// package lists of a fresh machine may be missing or stale).
fn apt_get_update_once(apt_get: &Path) {
    static UPDATED: OnceLock<()> = OnceLock::new();
    UPDATED.get_or_init(|| {
        let mut update = apt_command(apt_get);
        update.arg("update");
        let output = run(&mut update);
        assert!(
            output.status.success(),
            "apt-get update failed: {}",
            describe(&update, &output)
        );
    });
}

/// `apt-get` without prompts, waiting for a dpkg lock held by someone else.
fn apt_command(apt_get: &Path) -> Command {
    let mut cmd = Command::new(apt_get);
    cmd.env("DEBIAN_FRONTEND", "noninteractive").args([
        "-o",
        &format!("DPkg::Lock::Timeout={DPKG_LOCK_TIMEOUT_SECS}"),
    ]);
    cmd
}

/// Runs `cmd` to completion with its output collected.
fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `cmd`, its exit status and the tail of its output, for panic messages.
fn describe(cmd: &Command, output: &Output) -> String {
    let tail = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    format!(
        "{cmd:?}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        tail(&output.stdout),
        tail(&output.stderr)
    )
}

/// Where `binary` is, if anywhere we look.
fn find(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        let path = PathBuf::from(binary);
        return is_executable(&path).then_some(path);
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .chain(postgresql_bin_dirs())
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

/// `/usr/lib/postgresql/<version>/bin`, newest version first.
fn postgresql_bin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// Whether `path` is a regular file with an execute bit.
fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
