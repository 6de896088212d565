//! Node processes: starting them, recognising them, signalling them, and
//! making sure none outlives the command that owns it.
//!
//! Every node runs in its own process group, so a ctrl-c typed at the
//! terminal reaches only xtask, which then stops the nodes in order
//! (SIGTERM, then SIGKILL after a bound). A pid read back from a state file
//! is only signalled after [`probe`] has checked it still runs the exact
//! command line we started; this module must never signal anything else.

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node gets to stop after SIGTERM before it is killed.
pub const STOP_BOUND: Duration = Duration::from_secs(10);

/// What a pid from a state file is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The node we started, running.
    Running,
    /// The node we started, stopped by SIGSTOP.
    Paused,
    /// Gone (exited, a zombie, or the pid now belongs to another program).
    Gone,
}

/// Starts `binary args...` with stdout and stderr appended to `log`, in a
/// process group of its own and with no stdin.
pub fn spawn(binary: &Path, args: &[String], log: &Path) -> Result<Child> {
    spawn_via(&[], binary, args, log)
}

/// Like [`spawn`], but started as `wrapper... binary args...`, where the
/// wrapper (such as `ip netns exec NS`) sets something up and then execs
/// `binary` in place. Because it execs rather than forks, the child's pid
/// is the binary's own once it runs, so [`probe`] and [`signal`] work on it
/// as on a directly spawned one. An empty wrapper is [`spawn`].
pub fn spawn_via(wrapper: &[String], binary: &Path, args: &[String], log: &Path) -> Result<Child> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open log file {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("cannot open log file {}", log.display()))?;
    let mut cmd = match wrapper.split_first() {
        None => Command::new(binary),
        Some((program, pre)) => {
            let mut c = Command::new(program);
            c.args(pre).arg(binary);
            c
        }
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

/// Checks whether `pid` is still the process started as `binary args...`.
///
/// On Linux this reads `/proc/<pid>/cmdline` and `/proc/<pid>/stat`, so a
/// recycled pid or a zombie counts as gone. Elsewhere it can only ask
/// whether the pid exists.
pub fn probe(pid: u32, binary: &Path, args: &[String]) -> Probe {
    if pid == 0 {
        return Probe::Gone;
    }
    let proc_dir = Path::new("/proc");
    if !proc_dir.join("self").exists() {
        return match kill(Pid::from_raw(pid as i32), None) {
            Ok(()) => Probe::Running,
            Err(_) => Probe::Gone,
        };
    }
    let dir = proc_dir.join(pid.to_string());
    let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
        return Probe::Gone;
    };
    let mut parts = cmdline.split(|&b| b == 0);
    let exe_matches = parts
        .next()
        .is_some_and(|argv0| argv0 == binary.as_os_str().as_bytes());
    let rest: Vec<&[u8]> = parts.filter(|p| !p.is_empty()).collect();
    let args_match =
        rest.len() == args.len() && rest.iter().zip(args).all(|(a, b)| *a == b.as_bytes());
    if !exe_matches || !args_match {
        return Probe::Gone;
    }
    let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
        return Probe::Gone;
    };
    // The state letter follows the parenthesised command name, which may
    // itself hold spaces or parentheses: look after the last ')'.
    match stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
    {
        Some('Z' | 'X' | 'x') | None => Probe::Gone,
        Some('T' | 't') => Probe::Paused,
        Some(_) => Probe::Running,
    }
}

/// Sends `sig` to `pid`. A process that is already gone is not an error.
pub fn signal(pid: u32, sig: Signal) -> Result<()> {
    match kill(Pid::from_raw(pid as i32), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot send {sig} to process {pid}")),
    }
}

/// A process to stop: its pid and how to recognise it.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The pid.
    pub pid: u32,
    /// The binary it was started from.
    pub binary: &'a Path,
    /// Its arguments.
    pub args: &'a [String],
}

/// Stops every target: SIGTERM (and SIGCONT, since a paused process cannot
/// act on SIGTERM), then SIGKILL for any still running after `bound`.
/// `reap` is called while waiting so a parent can collect its children.
/// Returns the pids that had to be killed.
pub fn stop_all(targets: &[Target<'_>], bound: Duration, mut reap: impl FnMut()) -> Vec<u32> {
    let alive = |t: &Target<'_>| probe(t.pid, t.binary, t.args) != Probe::Gone;
    for t in targets.iter().filter(|t| alive(t)) {
        let _ = signal(t.pid, Signal::SIGTERM);
        let _ = signal(t.pid, Signal::SIGCONT);
    }
    let deadline = Instant::now() + bound;
    loop {
        reap();
        if !targets.iter().any(alive) {
            return Vec::new();
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut killed = Vec::new();
    for t in targets.iter().filter(|t| alive(t)) {
        let _ = signal(t.pid, Signal::SIGKILL);
        killed.push(t.pid);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && targets.iter().any(alive) {
        reap();
        std::thread::sleep(Duration::from_millis(20));
    }
    reap();
    killed
}

/// Children started by this process. Dropping it kills (SIGKILL) every one
/// still running and waits for it, so an error or a panic anywhere never
/// leaves a node behind.
#[derive(Debug, Default)]
pub struct Children {
    children: Vec<Child>,
}

impl Children {
    /// Takes ownership of `child`.
    pub fn push(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Collects any child that has exited; returns (pid, how it ended) for
    /// each, once.
    pub fn reap(&mut self) -> Vec<(u32, String)> {
        let mut ended = Vec::new();
        self.children.retain_mut(|c| match c.try_wait() {
            Ok(Some(status)) => {
                ended.push((c.id(), describe_exit(status)));
                false
            }
            Ok(None) => true,
            Err(_) => false,
        });
        ended
    }

    /// Kills every child still running and waits for each.
    pub fn kill_all(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// "exit code 2" or "killed by SIGKILL".
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exit code {code}")
    } else if let Some(sig) = status.signal() {
        match Signal::try_from(sig) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {sig}"),
        }
    } else {
        "ended".to_owned()
    }
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(log: &Path, n: usize) -> String {
    const MAX: u64 = 64 * 1024;
    let Ok(mut f) = std::fs::File::open(log) else {
        return String::new();
    };
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(MAX)));
    let mut buf = Vec::new();
    let _ = f.take(MAX).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(secs: &str) -> (std::path::PathBuf, Vec<String>) {
        (
            std::path::PathBuf::from("/bin/sleep"),
            vec![secs.to_owned()],
        )
    }

    #[test]
    fn probe_recognises_only_the_exact_command() {
        let dir = tempfile::tempdir().unwrap();
        let (bin, args) = sleeper("30");
        let mut kids = Children::default();
        let child = spawn(&bin, &args, &dir.path().join("s.log")).unwrap();
        let pid = child.id();
        kids.push(child);
        // Right after fork the child still shows the parent's command line
        // until it has exec'd: wait (bounded) for the exec.
        let deadline = Instant::now() + Duration::from_secs(10);
        while probe(pid, &bin, &args) != Probe::Running && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(probe(pid, &bin, &args), Probe::Running);
        assert_eq!(probe(pid, &bin, &["31".to_owned()]), Probe::Gone);
        assert_eq!(probe(pid, Path::new("/bin/true"), &args), Probe::Gone);
        assert_eq!(probe(0, &bin, &args), Probe::Gone);

        signal(pid, Signal::SIGSTOP).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while probe(pid, &bin, &args) != Probe::Paused && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(probe(pid, &bin, &args), Probe::Paused);

        // A paused process still stops: stop_all sends SIGCONT with SIGTERM.
        let t = Target {
            pid,
            binary: &bin,
            args: &args,
        };
        let killed = stop_all(&[t], Duration::from_secs(10), || {
            kids.reap();
        });
        assert!(killed.is_empty());
        assert_eq!(probe(pid, &bin, &args), Probe::Gone);
    }

    #[test]
    fn a_wrapper_that_execs_in_place_leaves_the_binarys_own_pid() {
        let dir = tempfile::tempdir().unwrap();
        let (bin, args) = sleeper("30");
        let mut kids = Children::default();
        // env execs its command in place, as `ip netns exec` does.
        let child = spawn_via(
            &["/usr/bin/env".to_owned()],
            &bin,
            &args,
            &dir.path().join("s.log"),
        )
        .unwrap();
        let pid = child.id();
        kids.push(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while probe(pid, &bin, &args) != Probe::Running && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(probe(pid, &bin, &args), Probe::Running);
        signal(pid, Signal::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while kids.reap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(probe(pid, &bin, &args), Probe::Gone);
    }

    #[test]
    fn stop_all_kills_what_ignores_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let bin = std::path::PathBuf::from("/bin/sh");
        // Short sleeps, so nothing outlives the test once the shell is killed.
        let args = vec![
            "-c".to_owned(),
            "trap '' TERM; echo ready; while :; do sleep 1; done".to_owned(),
        ];
        let log = dir.path().join("s.log");
        let mut kids = Children::default();
        let child = spawn(&bin, &args, &log).unwrap();
        let pid = child.id();
        kids.push(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while log_tail(&log, 1) != "ready" {
            assert!(Instant::now() < deadline, "the shell never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        let t = Target {
            pid,
            binary: &bin,
            args: &args,
        };
        let killed = stop_all(&[t], Duration::from_millis(300), || {
            kids.reap();
        });
        assert_eq!(killed, vec![pid]);
        assert_eq!(probe(pid, &bin, &args), Probe::Gone);
    }

    #[test]
    fn dropping_children_kills_them() {
        let dir = tempfile::tempdir().unwrap();
        let (bin, args) = sleeper("30");
        let pid;
        {
            let mut kids = Children::default();
            let child = spawn(&bin, &args, &dir.path().join("s.log")).unwrap();
            pid = child.id();
            kids.push(child);
        }
        assert_eq!(probe(pid, &bin, &args), Probe::Gone);
    }

    #[test]
    fn reap_reports_how_children_ended() {
        let dir = tempfile::tempdir().unwrap();
        let mut kids = Children::default();
        let child = spawn(
            Path::new("/bin/sh"),
            &["-c".to_owned(), "echo hello; exit 3".to_owned()],
            &dir.path().join("s.log"),
        )
        .unwrap();
        let pid = child.id();
        kids.push(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut ended = Vec::new();
        while ended.is_empty() && Instant::now() < deadline {
            ended = kids.reap();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(ended, vec![(pid, "exit code 3".to_owned())]);
        assert_eq!(log_tail(&dir.path().join("s.log"), 5), "hello");
    }
}
