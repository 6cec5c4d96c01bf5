//! A real SMTP server on loopback for e-mail tests: Python's aiosmtpd, started
//! on a free port of 127.0.0.1 with its own folder, where each message it takes
//! is written whole (as received) and, beside it, its subject and decoded text.
//! It can require STARTTLS (with a certificate made for the test by openssl)
//! and a login. Dropped, it is stopped.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::output_text;

/// How the test server protects its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    /// STARTTLS required, with a certificate for "localhost" (see `cert`).
    StartTls,
}

pub struct SmtpServer {
    pub port: u16,
    /// Where the messages are written: `001.eml` (as received) and `001.txt`.
    pub dir: PathBuf,
    /// The certificate the server shows, for `SSL_CERT_FILE` of the client.
    pub cert: Option<PathBuf>,
    child: Child,
    _tmp: tempfile::TempDir,
}

const SERVER: &str = r#"
import email, email.policy, os, socket, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

folder, mode = sys.argv[1], sys.argv[2]
user, password = os.environ.get("SMTP_USER"), os.environ.get("SMTP_PASSWORD")

class Handler:
    def __init__(self):
        self.n = 0
    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        auth = getattr(session, "auth_data", None)
        who = auth.login.decode() if isinstance(auth, LoginPassword) else "none"
        text = "Subject: %s\nTo: %s\nLogin: %s\n\n%s" % (
            message["subject"], ", ".join(envelope.rcpt_tos), who,
            message.get_content().replace("\r\n", "\n"))
        for name, data in (("eml", raw), ("txt", text.encode())):
            tmp = os.path.join(folder, ".%03d.%s" % (self.n, name))
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, os.path.join(folder, "%03d.%s" % (self.n, name)))
        return "250 OK"

def login(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
          and auth_data.password.decode() == password)
    return AuthResult(success=ok, auth_data=auth_data)

kwargs = {}
if mode == "starttls":
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(os.path.join(folder, "..", "cert.pem"), os.path.join(folder, "..", "key.pem"))
    kwargs.update(tls_context=context, require_starttls=True)
if user:
    kwargs.update(authenticator=login, auth_require_tls=True)
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
controller = Controller(Handler(), hostname="127.0.0.1", port=port, server_kwargs=kwargs)
controller.start()
print(port, flush=True)
sys.stdin.read()
controller.stop()
"#;

impl SmtpServer {
    /// Starts the server, with a login if `login` is given. `None`, after printing
    /// why, where no such server can run here (no python3 or aiosmtpd, no openssl).
    pub fn start(test: &str, mode: Mode, login: Option<(&str, &str)>) -> Option<Self> {
        let tmp = tempfile::Builder::new()
            .prefix("undelete-smtp-")
            .tempdir()
            .expect("create a temporary folder");
        let dir = tmp.path().join("mail");
        fs::create_dir(&dir).expect("create the mail folder");
        // The first Python that has aiosmtpd: the one on PATH may be a private one
        // (pyenv, a virtualenv) without the system's packages, where apt installed it.
        let python = ["python3", "/usr/bin/python3"].into_iter().find(|python| {
            Command::new(python)
                .args(["-c", "import aiosmtpd"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        let Some(python) = python else {
            eprintln!(
                "SKIPPED {test}: no SMTP server to send to (python3 with aiosmtpd: \
                 apt-get install python3-aiosmtpd)"
            );
            return None;
        };
        let cert = match mode {
            Mode::Plain => None,
            Mode::StartTls => Some(make_certificate(test, tmp.path())?),
        };
        let mut command = Command::new(python);
        command
            .args(["-c", SERVER])
            .arg(&dir)
            .arg(match mode {
                Mode::Plain => "plain",
                Mode::StartTls => "starttls",
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((user, password)) = login {
            command
                .env("SMTP_USER", user)
                .env("SMTP_PASSWORD", password);
        }
        let mut child = command.spawn().expect("start python3");
        let mut first = String::new();
        let stdout = child.stdout.take().expect("piped");
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read the port");
        let port = first.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the SMTP server did not start: {first:?}")
        });
        Some(Self {
            port,
            dir,
            cert,
            child,
            _tmp: tmp,
        })
    }

    /// Waits (bounded) until `n` messages have come; returns each decoded
    /// ("Subject: …", "To: …", "Login: …", a blank line, the text), oldest first.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages("txt");
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} e-mails came within {timeout:?}: {got:#?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every message as received, byte for byte (as text), oldest first.
    pub fn raw(&self) -> Vec<String> {
        self.messages("eml")
    }

    fn messages(&self, ext: &str) -> Vec<String> {
        let mut names: Vec<PathBuf> = fs::read_dir(&self.dir)
            .expect("read the mail folder")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| fs::read_to_string(p).expect("read a message"))
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A certificate authority (`ca.pem`, returned: what the client trusts) and a
/// certificate it signed for "localhost" and 127.0.0.1 (`cert.pem`, `key.pem`),
/// in `dir`.
fn make_certificate(test: &str, dir: &Path) -> Option<PathBuf> {
    fs::write(
        dir.join("leaf.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("write the certificate's extensions");
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=undelete test authority",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.cnf",
            "-out",
            "cert.pem",
        ],
    ];
    for args in steps {
        match Command::new("openssl").args(args).current_dir(dir).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!(
                    "SKIPPED {test}: openssl could not make a certificate: {}",
                    output_text(&out)
                );
                return None;
            }
            Err(e) => {
                eprintln!("SKIPPED {test}: cannot run openssl ({e}); apt-get install openssl");
                return None;
            }
        }
    }
    Some(dir.join("ca.pem"))
}
