//! A virtual X display (Xvfb) for the tests that look at windows: Wine's
//! windows are X windows there, found by title and driven by real key
//! presses (xdotool, through the XTEST extension), and the screen is
//! saved as PNG (ImageMagick's `import`). Missing programs fail the test
//! with the command that installs them.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str =
    "apt-get install xvfb xdotool imagemagick (scripts/windows.sh build installs them)";

pub struct Xvfb {
    child: Child,
    /// `:N`
    pub display: String,
}

fn need(program: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()));
    assert!(found, "{program} is missing: {INSTALL}");
}

impl Xvfb {
    /// A fresh 1024×768 display on the first free number from 50.
    pub fn start() -> Xvfb {
        for p in ["Xvfb", "xdotool", "import"] {
            need(p);
        }
        for n in 50..150 {
            if Path::new(&format!("/tmp/.X{n}-lock")).exists()
                || Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
            {
                continue;
            }
            let display = format!(":{n}");
            let Ok(child) = Command::new("Xvfb")
                .args([&display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                panic!("Xvfb does not start: {INSTALL}");
            };
            let mut x = Xvfb { child, display };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                    return x;
                }
                if let Ok(Some(_)) = x.child.try_wait() {
                    break; // another server took the number meanwhile
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = x.child.kill();
        }
        panic!("no free X display between :50 and :149 for Xvfb");
    }

    fn tool(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("DISPLAY", &self.display);
        c
    }

    /// The visible windows titled exactly `title`.
    pub fn windows(&self, title: &str) -> Vec<String> {
        let out = self
            .tool("xdotool")
            .args(["search", "--onlyvisible", "--name"])
            .arg(format!("^{title}$"))
            .output()
            .expect("xdotool runs");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Wait (up to `within`) for a visible window titled `title` other
    /// than those in `not`.
    pub fn wait_window(&self, title: &str, not: &[String], within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(w) = self.windows(title).into_iter().find(|w| !not.contains(w)) {
                return Some(w);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    /// Wait (up to `within`) until window `id` is no longer visible.
    pub fn wait_gone(&self, title: &str, id: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !self.windows(title).iter().any(|w| w == id) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// Give window `id` the keyboard and press `keys` (xdotool key names).
    pub fn keys(&self, id: &str, keys: &[&str]) {
        let ok = self
            .tool("xdotool")
            .args(["windowfocus", "--sync", id])
            .status()
            .expect("xdotool runs")
            .success();
        assert!(ok, "xdotool could not focus window {id}");
        std::thread::sleep(Duration::from_millis(300));
        for k in keys {
            let ok = self
                .tool("xdotool")
                .args(["key", "--delay", "80", k])
                .status()
                .expect("xdotool runs")
                .success();
            assert!(ok, "xdotool key {k}");
        }
    }

    /// Type `text` into window `id`, as keys.
    pub fn type_text(&self, id: &str, text: &str) {
        let ok = self
            .tool("xdotool")
            .args(["windowfocus", "--sync", id])
            .status()
            .expect("xdotool runs")
            .success();
        assert!(ok, "xdotool could not focus window {id}");
        std::thread::sleep(Duration::from_millis(300));
        let ok = self
            .tool("xdotool")
            .args(["type", "--delay", "80", text])
            .status()
            .expect("xdotool runs")
            .success();
        assert!(ok, "xdotool type");
    }

    /// The whole screen, as a PNG at `path`; its size in bytes.
    pub fn screenshot(&self, path: &Path) -> u64 {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).expect("screenshot directory");
        }
        let ok = self
            .tool("import")
            .args(["-window", "root"])
            .arg(path)
            .status()
            .expect("import runs")
            .success();
        assert!(ok, "import could not save the screen: {INSTALL}");
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// The colours used in the screenshot at `path` (a blank screen has
    /// one): proof that something was drawn.
    pub fn colours(path: &Path) -> usize {
        let out = Command::new("identify")
            .args(["-format", "%k"])
            .arg(path)
            .output()
            .expect("identify runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
