//! Long-running helper programs of the topology harnesses (PgBouncer, etcd,
//! Patroni, HAProxy): each a plain child process of the test, in its own
//! process group, as the `postgres` OS user when the tests run as root, with
//! stdout and stderr appended to a log file and its pid written to a pid file
//! that a [`Watchdog`] reads if the test process dies without unwinding.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::packages::is_root;
use super::pg::chown_to_pg_user;
use super::{pid_alive, send_signal};

/// OS user that runs the helper programs when the tests run as root (PgBouncer
/// and PostgreSQL refuse to run as root; the others follow for file ownership).
pub const DAEMON_OS_USER: &str = "postgres";
/// Pause between polls of a process's state.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Lines of log quoted in panic messages.
pub const LOG_TAIL_LINES: usize = 40;

/// A command for `program` run as [`DAEMON_OS_USER`] (via `setpriv`) when the
/// tests run as root, else as the current user; cwd `/`, stdin closed.
pub fn unprivileged_command(program: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={DAEMON_OS_USER}"),
            &format!("--regid={DAEMON_OS_USER}"),
            "--init-groups",
            "--",
        ]);
        cmd.arg(program);
        cmd
    } else {
        Command::new(program)
    };
    // The daemon's OS user may not be allowed into the caller's directory.
    cmd.current_dir("/").stdin(Stdio::null());
    cmd
}

/// Creates `dir` (mode 0700 unless `mode` says otherwise) owned by the
/// daemons' OS user.
pub fn create_owned_dir(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
    chown_to_pg_user(dir);
}

/// Writes `contents` to `path` with `mode`, owned by the daemons' OS user.
pub fn write_owned_file(path: &Path, contents: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    chown_to_pg_user(path);
}

/// The whole of a log file (empty when it does not exist yet).
pub fn read_log(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// The last [`LOG_TAIL_LINES`] lines of a log file.
pub fn log_tail(path: &Path) -> String {
    let log = read_log(path);
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// One running helper program, killed (and reaped) on drop.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Child,
    pid_file: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` in its own process group with stdout and stderr appended
    /// to `log`, and writes its pid to `pid_file` (for the [`Watchdog`]).
    /// `cmd` must exec the daemon itself (no wrapping shell), so the pid is
    /// the daemon's.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path, pid_file: &Path) -> Daemon {
        let open_log = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap_or_else(|e| panic!("{name}: open log {}: {e}", log.display()))
        };
        cmd.stdout(open_log()).stderr(open_log()).process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot run {cmd:?}: {e}"));
        fs::write(pid_file, format!("{}\n", child.id()))
            .unwrap_or_else(|e| panic!("{name}: write {}: {e}", pid_file.display()));
        Daemon {
            name: name.to_owned(),
            child,
            pid_file: pid_file.to_owned(),
            log: log.to_owned(),
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in i32")
    }

    /// Whether the daemon has not exited yet (a stopped one counts as running).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (a name such as `"TERM"`) to the daemon; panics if the
    /// process is gone.
    pub fn signal(&self, signal: &str) {
        assert!(
            send_signal(self.pid(), signal),
            "{}: kill -s {signal} {} failed",
            self.name,
            self.pid()
        );
    }

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` and waits up to `limit` for the daemon to exit, then
    /// kills it; returns whether it exited on its own.
    pub async fn stop(&mut self, signal: &str, limit: Duration) -> bool {
        if !self.is_running() {
            return true;
        }
        send_signal(self.pid(), "CONT");
        send_signal(self.pid(), signal);
        let deadline = Instant::now() + limit;
        while self.is_running() {
            if Instant::now() > deadline {
                self.kill();
                return false;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        true
    }

    /// The daemon's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The pid file the watchdog reads.
    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        send_signal(self.pid(), "CONT");
        self.kill();
    }
}

/// Polls (blocking) until `pid` is gone; returns whether it went within `limit`.
pub fn wait_until_dead_blocking(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while pid_alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// A detached shell that waits for the test process to die and then, in
/// order, `kill -9`s every pid named on the first line of each pid file
/// (files absent at that moment are skipped) and deletes a directory. It only
/// matters when the test process dies without unwinding (e.g. `kill -9` on a
/// timeout); dropping the `Watchdog` ends it.
#[derive(Debug)]
pub struct Watchdog {
    child: Option<Child>,
}

impl Watchdog {
    /// Starts the watchdog for `pid_files` (read when it fires, so they may
    /// be rewritten on restarts, and may name a postmaster's `postmaster.pid`)
    /// and the directory `root` to delete.
    pub fn spawn(root: &Path, pid_files: &[PathBuf]) -> Watchdog {
        // `alive` treats zombies as dead: PID 1 may be slow to reap them.
        const SCRIPT: &str = r#"
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat"; }
test_pid=$1; root=$2; shift 2
while alive "$test_pid"; do sleep 1; done
for file in "$@"; do
  pid=$(head -n 1 "$file" 2>/dev/null)
  case "$pid" in ''|*[!0-9]*) continue;; esac
  kill -CONT "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null
done
sleep 1
rm -rf "$root"
"#;
        let child = Command::new("sh")
            .args(["-c", SCRIPT, "dbretry-topology-watchdog"])
            .arg(std::process::id().to_string())
            .arg(root)
            .args(pid_files)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .ok();
        Watchdog { child }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
