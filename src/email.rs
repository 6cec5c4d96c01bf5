//! Sending an e-mail over SMTP: the settings of the `[alert.email]` table, the
//! password read from its own file, one message sent with a bounded wait.
//!
//! What a message says is decided elsewhere (`incident`); this module only
//! delivers it. It never retries: a failure is returned, for the caller to log
//! and keep where `doctor` shows it.

use std::path::{Path, PathBuf};

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};

use crate::config::{EmailSettings, Security};

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("cannot read the password file {path}: {source}")]
    PasswordUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the password file {path} can be read by other users; make it readable only by \
         its owner: sudo chmod 600 {path}"
    )]
    PasswordExposed { path: PathBuf },
    #[error("the password file {path} is empty")]
    PasswordEmpty { path: PathBuf },
    #[error("the message could not be made: {0}")]
    Message(String),
    #[error("the mail server {server} (port {port}) did not take the message: {reason}")]
    Send {
        server: String,
        port: u16,
        reason: String,
    },
}

/// Sends `letter` to every recipient. Blocks for at most a few times the timeout.
pub fn send(settings: &EmailSettings, letter: &Letter) -> Result<(), EmailError> {
    let mut message = Message::builder()
        .from(settings.from.clone())
        .subject(&letter.subject)
        .header(ContentType::TEXT_PLAIN);
    for to in &settings.to {
        message = message.to(to.clone());
    }
    let message = message
        .body(letter.body.clone())
        .map_err(|e| EmailError::Message(e.to_string()))?;
    let failed = |reason: String| EmailError::Send {
        server: settings.server.clone(),
        port: settings.port,
        reason,
    };
    let builder = match settings.security {
        Security::Tls => SmtpTransport::relay(&settings.server).map_err(|e| failed(words(&e)))?,
        Security::StartTls => {
            SmtpTransport::starttls_relay(&settings.server).map_err(|e| failed(words(&e)))?
        }
        Security::None => SmtpTransport::builder_dangerous(&settings.server),
    };
    let mut builder = builder.port(settings.port).timeout(Some(settings.timeout));
    if let Some((user, password_file)) = &settings.login {
        let password = read_password(password_file)?;
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    builder
        .build()
        .send(&message)
        .map(|_| ())
        .map_err(|e| failed(words(&e)))
}

/// The SMTP error with its causes, in one line.
fn words(err: &lettre::transport::smtp::Error) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
        source = cause_of(source);
    }
    out
}

fn cause_of<'a>(
    err: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    err.and_then(std::error::Error::source)
}

/// The password, from a file that only its owner can read: a password other
/// users can read is refused, not used.
pub fn read_password(path: &Path) -> Result<String, EmailError> {
    use std::os::unix::fs::MetadataExt;
    let unreadable = |source| EmailError::PasswordUnreadable {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.mode() & 0o077 != 0 {
        return Err(EmailError::PasswordExposed {
            path: path.to_owned(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    // One line: the newline an editor adds is not part of it.
    let password = text.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(EmailError::PasswordEmpty {
            path: path.to_owned(),
        });
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_password_others_can_read_is_refused_and_the_newline_is_not_part_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret pass\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_password(&file).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password(&file).unwrap(), "s3cret pass");
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(
            read_password(&file),
            Err(EmailError::PasswordEmpty { .. })
        ));
    }
}
