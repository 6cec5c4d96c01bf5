//! The screens in `docs/support-playbook.md` are made here, by the real program,
//! so the playbook cannot drift from what the customer sees. When the program's
//! words change, this test fails; rewrite the screens with
//!
//!     UNDELETE_BLESS=1 cargo test --release --test cli playbook
//!
//! and read the diff of the playbook before committing it.
//!
//! What differs from run to run (temporary paths, clock times, incident codes,
//! free space) is replaced by fixed, realistic values.

use std::collections::BTreeMap;
use std::fs;

use regex::Regex;

use crate::common::LoopDisk;
use crate::common::pty::Terminal;
use crate::common::smtp::{Mode, SmtpServer};
use crate::common::{BIN, TestEnv, content};

const PLAYBOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/support-playbook.md");

#[test]
fn the_support_playbook_shows_the_programs_real_screens() {
    let mut env = TestEnv::new();
    let mut screens = Screens::new(&env);
    for i in 0..40 {
        env.write(
            format!("photos/IMG_{:04}.jpg", 2100 + i),
            content(i, 250_000),
        );
    }
    env.write("photos/final-cut.mov", content(99, 3_000_000));
    env.write("photos/.~lock.tmp", "editor scratch");
    // The owner's e-mail goes to a real mail server on loopback, where one can run.
    let mail = SmtpServer::start("playbook e-mail screens", Mode::Plain, None);
    let config = env.root.join("config.toml");
    fs::write(
        &config,
        match &mail {
            Some(server) => format!(
                "[alert.email]\nserver = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
                 from = \"File server <fileserver@photo-studio.example>\"\n\
                 to = [\"owner@photo-studio.example\"]\n",
                server.port
            ),
            None => String::new(),
        },
    )
    .unwrap();
    env.start_daemon_and_sync(&[
        // The screens are the same as root or not: inotify, which anyone may use.
        "--events",
        "inotify",
        "--config",
        config.to_str().unwrap(),
        "--max-file-size",
        "2MB",
        "--exclude",
        "*.tmp",
        "--alert-files",
        "30",
        // Both deletions below join one incident however slow the machine is.
        "--incident-gap",
        "1h",
    ]);
    // The first 30 go before the rest, so the first e-mail's "so far" is the same on
    // every run: within one `rm -rf` it depends on how the daemon's batches fall.
    for i in 0..30 {
        fs::remove_file(env.path(format!("photos/IMG_{:04}.jpg", 2100 + i))).unwrap();
    }
    env.sync();
    env.remove_and_sync(&["photos"]);
    screens.add("status-alert", &env.run_ok(&["status"]));
    if let Some(server) = &mail {
        screens.add("email-started", &email_screen(server, 0));
    }

    // The customer does not know the folder: search by name, then change their mind.
    let mut term = emergency(&env, "");
    term.expect("Press Enter for 1:");
    term.send("s\n");
    term.expect("Type part of a file or folder name:");
    term.send("photo\n");
    term.expect("Press Enter for 1:");
    term.send("\n");
    term.expect("Your choice [1]:");
    term.send("\x03");
    screens.add("search-then-ctrl-c", &term.finish().1);

    // The main road: Enter at every question.
    let mut term = emergency(&env, "");
    for question in ["Press Enter for 1:", "Your choice [1]:", "[Y/n]:"] {
        term.expect(question);
        term.send("\n");
    }
    screens.add("emergency-enter", &term.finish().1);
    // The technician reads the saved report later, as a member of the report group
    // or with sudo.
    screens.add("report-last", &env.run_ok(&["report", "last"]));
    // Everything that could come back is back: the alert is history. Read as the
    // technician does on the callback, the next day.
    env.sync();
    screens.add_next_day("callback-status", &env.run_ok(&["status"]));
    screens.add_next_day("callback-alerts", &env.run_ok(&["alerts"]));
    if let Some(server) = &mail {
        screens.add("email-ended", &email_screen(server, 1));
    }

    // Deleted again, and meanwhile someone saved a new IMG_2100.jpg.
    env.remove_and_sync(&["photos"]);
    env.write(
        "photos/IMG_2100.jpg",
        "a new photo, taken after the deletion",
    );
    env.sync();
    let out = env.run(&["emergency", "--yes"]);
    screens.add(
        "recreated",
        &from_step(5, &String::from_utf8_lossy(&out.stdout)),
    );

    // A full destination disk (where this machine can mount a small one).
    if let Some(usb) = LoopDisk::new("playbook destination-full screen", 8) {
        screens.mount = Some(usb.path.clone());
        let out = env
            .command()
            .args(["emergency", "--yes", "--to"])
            .arg(usb.join("photos-back"))
            .output()
            .unwrap();
        screens.add_varying(
            "destination-full",
            &from_step(5, &String::from_utf8_lossy(&out.stdout)),
        );
    }

    // The service was stopped.
    env.stop_daemon();
    screens.add("status-off", &env.run(&["status"]).stdout_text());
    let mut term = emergency(&env, "");
    term.expect("Press Enter for 1:");
    term.send("\x03");
    screens.add("not-running", &term.finish().1);

    // The lines a share needs for Previous Versions, as the technician prints them.
    screens.add("samba-config", &env.run_ok(&["samba-config", "/srv/share"]));

    screens.check_playbook();
}

/// The ransomware morning: every document of the share rewritten by one infected
/// PC. Its own share and daemon; its screens are checked against the same playbook
/// (to rewrite both tests' screens, bless with `--test-threads 1`).
#[test]
fn the_ransomware_morning_in_the_playbook_shows_the_programs_real_screens() {
    use crate::common::ransomware::{Variant, encrypt, office_file};
    let mut env = TestEnv::new();
    let mut screens = Screens::new(&env);
    let files: Vec<std::path::PathBuf> = (0..240)
        .map(|i| {
            let (name, bytes) = office_file(i);
            env.write(name, bytes)
        })
        .collect();
    let mail = SmtpServer::start("playbook ransomware screens", Mode::Plain, None);
    let config = env.root.join("config.toml");
    fs::write(
        &config,
        match &mail {
            Some(server) => format!(
                "[alert.email]\nserver = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
                 from = \"File server <fileserver@photo-studio.example>\"\n\
                 to = [\"owner@photo-studio.example\"]\n",
                server.port
            ),
            None => String::new(),
        },
    )
    .unwrap();
    // The screens are the same as root or not: inotify, which anyone may use.
    env.start_daemon_and_sync(&[
        "--config",
        config.to_str().unwrap(),
        "--incident-gap",
        "1h",
        "--events",
        "inotify",
    ]);
    // The first 200 before the rest, so the first e-mail's "so far" is the same on
    // every run.
    encrypt(Variant::InPlace, &files[..200], |_| {});
    env.sync();
    encrypt(Variant::InPlace, &files[200..], |_| {});
    env.sync();
    screens.add("ransomware-status", &env.run(&["status"]).stdout_text());
    if let Some(server) = &mail {
        screens.add("ransomware-email", &email_screen(server, 0));
    }
    let mut term = emergency(&env, "");
    for (question, answer) in [
        ("Press Enter for 1:", "\n"),
        ("Your choice [1]:", "\n"),
        ("Your choice for the encrypted copies [1]:", "2\n"),
        ("[Y/n]:", "\n"),
    ] {
        term.expect(question);
        term.send(answer);
    }
    screens.add("ransomware-emergency", &term.finish().1);
    env.sync();
    screens.add("ransomware-after", &env.run_ok(&["status"]));
    screens.check_playbook();
}

fn emergency(env: &TestEnv, flags: &str) -> Terminal {
    Terminal::start(&format!(
        "{BIN} --vault {} emergency {flags}",
        env.vault.display()
    ))
}

/// An e-mail as the owner reads it: who from and to, and the subject, as received
/// (long ones folded as the message carries them), then the text.
fn email_screen(server: &SmtpServer, n: usize) -> String {
    let decoded = &server.wait_for(n + 1, std::time::Duration::from_secs(60))[n];
    let raw = &server.raw()[n];
    let mut shown = String::new();
    let mut keep = false;
    for line in raw.lines().take_while(|l| !l.trim().is_empty()) {
        if !line.starts_with([' ', '\t']) {
            keep = ["From:", "To:", "Subject:"]
                .iter()
                .any(|h| line.starts_with(h));
        }
        if keep {
            shown.push_str(line.trim_end());
            shown.push('\n');
        }
    }
    let body = decoded.split_once("\n\n").map_or("", |(_, body)| body);
    let mut text = format!("{shown}\n{body}");
    let host = crate::common::host_name();
    for before in ["on ", "server ", "bin of "] {
        text = text.replace(&format!("{before}{host}"), &format!("{before}fileserver"));
    }
    text
}

/// The screen from "Step N" on.
fn from_step(n: u32, screen: &str) -> String {
    let at = screen
        .find(&format!("Step {n} of 5"))
        .unwrap_or_else(|| panic!("no step {n} in:\n{screen}"));
    screen[at..].to_owned()
}

trait StdoutText {
    fn stdout_text(&self) -> String;
}

impl StdoutText for std::process::Output {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

struct Screens {
    made: BTreeMap<&'static str, String>,
    /// Screens whose numbers change from run to run (which files fit on a disk
    /// that fills up depends on the order parallel writers finish in).
    varying: Vec<&'static str>,
    root: String,
    mount: Option<std::path::PathBuf>,
    /// Incident codes in order of appearance, each shown as a fixed one.
    codes: Vec<String>,
}

/// Codes shown in the playbook instead of the random ones of each run.
const CODES: [&str; 3] = ["K7Q-4MD", "H2X-9PA", "B4T-7WN"];

impl Screens {
    fn new(env: &TestEnv) -> Self {
        Self {
            made: BTreeMap::new(),
            varying: Vec::new(),
            root: env.root.display().to_string(),
            mount: None,
            codes: Vec::new(),
        }
    }

    fn add(&mut self, name: &'static str, screen: &str) {
        let text = self.steady(screen);
        // A command is shown whole, however long, so it can be typed as it is.
        let wide: Vec<&str> = text
            .lines()
            .filter(|l| l.chars().count() > 80 && !l.trim_start().starts_with("undelete "))
            .collect();
        assert!(
            wide.is_empty(),
            "screen {name} is wider than 80 columns:\n{}",
            wide.join("\n")
        );
        self.made.insert(name, text);
    }

    /// A screen as it reads the day after it was made: what happened "today"
    /// happened yesterday. A line of history is one message the program wraps
    /// (`report::wrap`): it is wrapped again as the program would, the longer word in.
    fn add_next_day(&mut self, name: &'static str, screen: &str) {
        let next_day = |text: &str| {
            Regex::new(r"\b(T|t)oday (\d\d:\d\d)")
                .unwrap()
                .replace_all(text, |c: &regex::Captures| {
                    let day = if &c[1] == "T" {
                        "Yesterday"
                    } else {
                        "yesterday"
                    };
                    format!("{day} {}", &c[2])
                })
                .into_owned()
        };
        let paragraphs: Vec<String> = screen
            .split("\n\n")
            .map(|p| {
                if p.starts_with("Resolved ") || p.starts_with("Alert ") {
                    let one = p.split_whitespace().collect::<Vec<_>>().join(" ");
                    undelete::wrap(&next_day(&one))
                } else {
                    next_day(p)
                }
            })
            .collect();
        self.add(name, &paragraphs.join("\n\n"));
    }

    fn add_varying(&mut self, name: &'static str, screen: &str) {
        self.varying.push(name);
        self.add(name, screen);
    }

    /// The screen with what changes from run to run replaced by fixed values.
    fn steady(&mut self, screen: &str) -> String {
        let mut text = screen.trim_end().to_owned() + "\n";
        if let Some(mount) = &self.mount {
            text = text.replace(&mount.display().to_string(), "/media/usb");
        }
        text = text
            .replace(&format!("{}/share", self.root), "/srv/share")
            .replace(&format!("{}/vault", self.root), "/var/lib/undelete");
        let code = Regex::new(r"\b[0-9A-Z]{3}-[0-9A-Z]{3}\b").unwrap();
        for found in code.find_iter(&text.clone()) {
            if !self.codes.iter().any(|c| c == found.as_str()) {
                self.codes.push(found.as_str().to_owned());
            }
        }
        for (n, real) in self.codes.iter().enumerate() {
            text = text.replace(real.as_str(), CODES[n.min(CODES.len() - 1)]);
        }
        for (pattern, steady) in [
            // Also where the longer real paths wrapped the line between the two.
            (
                r"\b(Today|Yesterday|today|yesterday)\s+\d\d:\d\d",
                "${1} 02:14",
            ),
            (
                r"[A-Z][a-z]+day \d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d",
                "Sunday 22 November 2026, 02:14",
            ),
            (
                r"\d{4}-\d\d-\d\d_\d{6}(-\d+)?\.txt",
                "2026-11-22_021807.txt",
            ),
            (r"\d{4}-\d\d-\d\d \d\d:\d\d", "2026-11-22 02:14"),
            (r"\d{4}-\d\d-\d\d", "2026-11-22"),
            (r"[\d.]+ [kMGT]?B free", "118.2 GB free"),
            (
                r"Free on that disk: [\d.]+ [kMGT]?B",
                "Free on that disk: 118.2 GB",
            ),
        ] {
            text = Regex::new(pattern)
                .unwrap()
                .replace_all(&text, steady)
                .into_owned();
        }
        text
    }

    /// Compares each `<!-- screen: NAME -->` block of the playbook with the screen
    /// made now; rewrites them with UNDELETE_BLESS=1.
    fn check_playbook(&self) {
        let doc = fs::read_to_string(PLAYBOOK).expect("read docs/support-playbook.md");
        let block = Regex::new(r"(?s)<!-- screen: ([a-z-]+) -->\n```text\n(.*?)```").unwrap();
        let digits = Regex::new(r"\d+").unwrap();
        let mut named = Vec::new();
        let updated = block.replace_all(&doc, |caps: &regex::Captures| {
            let name = caps[1].to_owned();
            named.push(name.clone());
            // A screen this machine could not make (no mount) keeps its last version,
            // and so does a varying one that differs only in its numbers.
            let shape = |s: &str| digits.replace_all(s, "#").into_owned();
            let screen = match self.made.get(name.as_str()) {
                Some(made)
                    if !self.varying.contains(&name.as_str()) || shape(made) != shape(&caps[2]) =>
                {
                    made.as_str()
                }
                _ => &caps[2],
            };
            format!("<!-- screen: {name} -->\n```text\n{screen}```")
        });
        for name in self.made.keys() {
            assert!(
                named.iter().any(|n| n == name),
                "the playbook has no place for the screen {name:?}"
            );
        }
        if updated == doc {
            return;
        }
        if std::env::var_os("UNDELETE_BLESS").is_some() {
            fs::write(PLAYBOOK, updated.as_bytes()).expect("rewrite the playbook");
            return;
        }
        let first = doc
            .lines()
            .zip(updated.lines())
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("playbook: {a}\nprogram:  {b}"))
            .unwrap_or_default();
        panic!(
            "docs/support-playbook.md no longer shows what the program prints.\n{first}\n\
             Rewrite its screens with: UNDELETE_BLESS=1 cargo test --release --test cli playbook"
        );
    }
}
