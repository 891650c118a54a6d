//! Programs from Debian packages that some tests need (promtool, …), installed on demand.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The path of `binary`, installing the Debian package `package` with apt-get first when the
/// binary is missing and the tests run as root. Panics with what to install otherwise, or with
/// apt-get's output when the install fails.
pub fn require(binary: &str, package: &str) -> PathBuf {
    // One install at a time within this process; apt-get's own lock (waited for below) covers
    // other processes.
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _installing = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = find(binary) {
        return path;
    }
    assert!(
        is_root(),
        "{binary} is not installed and the tests do not run as root: \
         install it with `apt-get install {package}`"
    );
    apt_get(&["update", "-qq"]);
    apt_get(&[
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "-o",
        "DPkg::Lock::Timeout=600",
        package,
    ]);
    find(binary).unwrap_or_else(|| {
        panic!("installed the Debian package {package}, but {binary} is still not on PATH")
    })
}

/// `binary` on `PATH`, or in the directories Debian installs programs to.
fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn apt_get(args: &[&str]) {
    let output = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run apt-get: {e}"));
    assert!(
        output.status.success(),
        "apt-get {} failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end(),
    );
}
