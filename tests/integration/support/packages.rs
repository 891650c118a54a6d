//! Debian packages the tests need, installed on first use.
//!
//! Minimal version: finds a program on `PATH` (and the `sbin` directories,
//! which a non-root `PATH` often lacks); when it is missing and the tests run
//! as root, installs its Debian package with `apt-get`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

/// Directories searched besides `PATH`.
const SBIN_DIRS: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The path of program `binary`, installing Debian package `package` first
/// when the program is missing. Panics, saying what to install, when it is
/// missing and the tests do not run as root, or when the install fails.
pub fn require(binary: &str, package: &str) -> PathBuf {
    // One install at a time in this process (apt's own lock guards the rest).
    static INSTALLING: Mutex<()> = Mutex::new(());
    if let Some(path) = find(binary) {
        return path;
    }
    let _guard = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = find(binary) {
        return path;
    }
    assert!(
        is_root(),
        "`{binary}` is missing: install the Debian package `{package}` \
         (`apt-get install {package}`); the tests install it themselves only when run as root"
    );
    let install = apt_get(&["install", "-y", "-q", "--no-install-recommends", package]);
    if !install.status.success() {
        // Package lists may be missing or stale on a fresh machine.
        let update = apt_get(&["update", "-q"]);
        let retry = apt_get(&["install", "-y", "-q", "--no-install-recommends", package]);
        assert!(
            retry.status.success(),
            "apt-get install {package} failed:\n{}\n{}\n{}",
            describe(&install),
            describe(&update),
            describe(&retry)
        );
    }
    find(binary).unwrap_or_else(|| panic!("installed `{package}`, but `{binary}` is still missing"))
}

/// The first executable file named `binary` on `PATH` or in [`SBIN_DIRS`].
fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file with an execute bit.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Whether this process runs as root (effective uid 0).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status.lines().find(|line| line.starts_with("Uid:"))?;
            Some(uids.split_whitespace().nth(2)? == "0")
        })
        .unwrap_or(false)
}

/// Runs `apt-get ARGS` non-interactively, waiting for apt's lock if needed.
fn apt_get(args: &[&str]) -> Output {
    Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run apt-get: {e}"))
}

/// A command's status and output, for a panic message.
fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end()
    )
}
