//! The saved login: `<config dir>/opsq/credentials.json`, readable by its owner only.
//!
//! Saving the token lets `status`, `submit` and `wait` run without a password; the
//! file is created 0600 because the token is as good as the password for 14 days.

use std::{
    fmt,
    fs::{self, OpenOptions},
    io::{ErrorKind, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// What `opsq login` keeps for later commands.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The server logged in to, the default for later commands.
    pub server: String,
    /// The bearer token; secret.
    pub token: String,
    /// Who logged in, for messages.
    pub user_name: String,
    /// The user's home account, the default `--alias`.
    pub account_alias: String,
    /// The home account's location, for messages.
    pub location_alias: String,
}

/// Hand-written so the token never lands in a log or an error message.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("token", &"<redacted>")
            .field("user_name", &self.user_name)
            .field("account_alias", &self.account_alias)
            .field("location_alias", &self.location_alias)
            .finish()
    }
}

/// The environment variable that moves the config directory, for tests, CI and
/// people who keep several logins apart.
pub const CONFIG_DIR_ENV: &str = "OPSQ_CONFIG_DIR";

/// Where the credentials file lives: `$OPSQ_CONFIG_DIR/opsq/credentials.json`, else
/// under the platform's config directory (`~/.config` on Linux).
pub fn credentials_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os(CONFIG_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => dirs::config_dir().with_context(|| {
            format!("cannot find a config directory for the saved login: set {CONFIG_DIR_ENV}")
        })?,
    };
    Ok(credentials_file_in(&base))
}

/// The credentials file under a given config directory.
pub fn credentials_file_in(config_dir: &Path) -> PathBuf {
    config_dir.join("opsq").join("credentials.json")
}

/// Writes `credentials` to `path`, creating its directory (0700) as needed.
///
/// The file is created 0600, and an existing file is set to 0600 before the token is
/// written into it, so the token is never readable by others even for a moment.
pub fn save(path: &Path, credentials: &Credentials) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the config directory {}", dir.display()))?;
    }
    let json = serde_json::to_vec_pretty(credentials).context("cannot encode the credentials")?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write the credentials file {}", path.display()))?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private (mode 0600)", path.display()))?;
    file.write_all(&json)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write the credentials file {}", path.display()))?;
    Ok(())
}

/// Reads the saved login, or `None` when there is none yet.
pub fn load(path: &Path) -> anyhow::Result<Option<Credentials>> {
    let raw = match fs::read(path) {
        Ok(raw) => raw,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read the credentials file {}", path.display()))
        }
    };
    let credentials = serde_json::from_slice(&raw).with_context(|| {
        format!("the credentials file {} is damaged: run `opsq login` again", path.display())
    })?;
    Ok(Some(credentials))
}

/// Reads the saved login, failing with what to do when there is none.
pub fn load_required(path: &Path) -> anyhow::Result<Credentials> {
    match load(path)? {
        Some(credentials) => Ok(credentials),
        None => bail!(
            "not logged in (no {}): run `opsq login --username USER --password-stdin` first",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Credentials {
        Credentials {
            server: "http://127.0.0.1:8080/".into(),
            token: "secret-token".into(),
            user_name: "admin".into(),
            account_alias: "OPSQ".into(),
            location_alias: "WA1".into(),
        }
    }

    fn mode(path: &Path) -> anyhow::Result<u32> {
        Ok(fs::metadata(path)?.permissions().mode() & 0o777)
    }

    #[test]
    fn save_then_load_round_trips_with_mode_0600() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = credentials_file_in(dir.path());
        assert_eq!(load(&path)?, None);
        save(&path, &sample())?;
        assert_eq!(load(&path)?, Some(sample()));
        assert_eq!(mode(&path)?, 0o600);
        let parent = path.parent().context("has a parent")?;
        assert_eq!(mode(parent)?, 0o700);
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path)?)?;
        assert_eq!(json["userName"], "admin");
        assert_eq!(json["accountAlias"], "OPSQ");
        assert_eq!(json["locationAlias"], "WA1");
        Ok(())
    }

    #[test]
    fn an_existing_open_file_is_made_private_and_replaced() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = credentials_file_in(dir.path());
        fs::create_dir_all(path.parent().context("has a parent")?)?;
        fs::write(&path, "{\"old\": \"and much longer than the new content will be......................................................................................................................................................................................................................\"}")?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        save(&path, &sample())?;
        assert_eq!(mode(&path)?, 0o600);
        assert_eq!(load(&path)?, Some(sample()));
        Ok(())
    }

    #[test]
    fn missing_and_damaged_files_say_what_to_do() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = credentials_file_in(dir.path());
        let err = load_required(&path).err().context("no file yet")?;
        assert!(format!("{err:#}").contains("opsq login"), "{err:#}");
        fs::create_dir_all(path.parent().context("has a parent")?)?;
        fs::write(&path, "not json")?;
        let err = load(&path).err().context("damaged")?;
        assert!(format!("{err:#}").contains("run `opsq login` again"), "{err:#}");
        Ok(())
    }

    #[test]
    fn debug_hides_the_token() {
        assert!(!format!("{:?}", sample()).contains("secret-token"));
    }
}
