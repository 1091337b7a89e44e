//! The saved login: `<config dir>/opsq/credentials.json`, readable by its owner only.
//!
//! Saving the token lets `status`, `submit` and `wait` run without a password; the
//! file is created 0600 because the token is as good as the password for 14 days.
//! Where no login can be saved (a worker under a service manager), `OPSQ_TOKEN` and
//! `OPSQ_SERVER` take its place: see [`resolve`].

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

/// The environment variable holding a bearer token, for workers and scripts that run
/// without a saved login (e.g. a token injected by a service manager). It wins over
/// the saved login's token.
pub const TOKEN_ENV: &str = "OPSQ_TOKEN";

/// The JWT claim naming the token's home account, as the CLC API issued it.
const ALIAS_CLAIM: &str = "urn:tier3:account-alias";

/// What an authenticated command talks to, and as whom.
#[derive(Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The server URL.
    pub server: String,
    /// The bearer token; secret.
    pub token: String,
    /// The account to act on, when known: `--alias`, else the token's home account.
    pub alias: Option<String>,
}

/// Hand-written so the token never lands in a log or an error message.
impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("server", &self.server)
            .field("token", &"<redacted>")
            .field("alias", &self.alias)
            .finish()
    }
}

/// Picks server, token and alias for a command.
///
/// With a non-empty `env_token` (from [`TOKEN_ENV`]) no saved login is needed: the
/// server is `--server`/`OPSQ_SERVER`, else the saved login's; the alias is
/// `--alias`, else the account named in the token, else the saved login's. Without
/// it, the saved login is required and flags override what it holds. `saved` is only
/// read when needed, so a missing or damaged file does not stop an `OPSQ_TOKEN` user
/// who passes `--server`.
pub fn resolve(
    server_flag: Option<String>,
    alias_flag: Option<String>,
    env_token: Option<String>,
    saved: impl FnOnce() -> anyhow::Result<Option<Credentials>>,
) -> anyhow::Result<Resolved> {
    match env_token.filter(|t| !t.trim().is_empty()) {
        Some(token) => {
            let token = token.trim().to_string();
            let alias = alias_flag.or_else(|| alias_in_token(&token));
            let saved_login = if server_flag.is_none() || alias.is_none() {
                match saved() {
                    Ok(saved) => saved,
                    // Only the server is worth failing for; an alias can be passed.
                    Err(err) if server_flag.is_none() => return Err(err),
                    Err(_) => None,
                }
            } else {
                None
            };
            let server = match (server_flag, &saved_login) {
                (Some(server), _) => server,
                (None, Some(saved)) => saved.server.clone(),
                (None, None) => {
                    bail!("{TOKEN_ENV} is set but no server is: pass --server or set OPSQ_SERVER")
                }
            };
            let alias = alias.or_else(|| saved_login.map(|c| c.account_alias));
            Ok(Resolved { server, token, alias })
        }
        None => {
            let saved = match saved()? {
                Some(saved) => saved,
                None => bail!(
                    "not logged in: run `opsq login --username USER --password-stdin` first, or set {TOKEN_ENV} and OPSQ_SERVER"
                ),
            };
            Ok(Resolved {
                server: server_flag.unwrap_or(saved.server),
                token: saved.token,
                alias: Some(alias_flag.unwrap_or(saved.account_alias)),
            })
        }
    }
}

/// The home account named in a JWT's claims, read without checking the signature
/// (only the server can, and it does on every call): it only picks the default alias.
fn alias_in_token(token: &str) -> Option<String> {
    use base64::Engine as _;
    let claims = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    claims.get(ALIAS_CLAIM)?.as_str().filter(|a| !a.is_empty()).map(str::to_string)
}

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
        let err = resolve(None, None, None, || load(&path)).err().context("no file yet")?;
        assert!(format!("{err:#}").contains("opsq login"), "{err:#}");
        fs::create_dir_all(path.parent().context("has a parent")?)?;
        fs::write(&path, "not json")?;
        let err = load(&path).err().context("damaged")?;
        assert!(format!("{err:#}").contains("run `opsq login` again"), "{err:#}");
        Ok(())
    }

    fn token_for(alias: &str) -> String {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = serde_json::json!({"unique_name": "w", ALIAS_CLAIM: alias});
        format!("{}.{}.sig", engine.encode(br#"{"alg":"HS256"}"#), engine.encode(claims.to_string()))
    }

    #[test]
    fn the_saved_login_is_used_unless_a_token_is_in_the_environment() -> anyhow::Result<()> {
        let saved = || Ok(Some(sample()));
        let resolved = resolve(None, None, None, saved)?;
        assert_eq!(resolved.server, "http://127.0.0.1:8080/");
        assert_eq!(resolved.token, "secret-token");
        assert_eq!(resolved.alias.as_deref(), Some("OPSQ"));
        let resolved =
            resolve(Some("http://other:1".into()), Some("SUB".into()), Some(String::new()), saved)?;
        assert_eq!((resolved.server.as_str(), resolved.alias.as_deref()), ("http://other:1", Some("SUB")));
        assert_eq!(resolved.token, "secret-token", "an empty OPSQ_TOKEN is ignored");

        let err = resolve(None, None, None, || Ok(None)).err().context("no login")?;
        let text = err.to_string();
        assert!(text.contains("opsq login") && text.contains(TOKEN_ENV), "{text}");
        Ok(())
    }

    #[test]
    fn an_environment_token_needs_no_saved_login() -> anyhow::Result<()> {
        let no_file = || -> anyhow::Result<Option<Credentials>> { anyhow::bail!("must not be read") };
        let token = token_for("ACME");
        let resolved = resolve(Some("http://h:1".into()), None, Some(format!(" {token}\n")), no_file)?;
        assert_eq!(resolved.server, "http://h:1");
        assert_eq!(resolved.token, token);
        assert_eq!(resolved.alias.as_deref(), Some("ACME"), "the alias comes from the token's claims");
        assert!(!format!("{resolved:?}").contains(&token));

        // No --server: the saved login's server, and its alias when the token names none.
        let resolved = resolve(None, None, Some("opaque".into()), || Ok(Some(sample())))?;
        assert_eq!(resolved.server, "http://127.0.0.1:8080/");
        assert_eq!(resolved.token, "opaque");
        assert_eq!(resolved.alias.as_deref(), Some("OPSQ"));

        let err = resolve(None, None, Some("opaque".into()), || Ok(None)).err().context("no server")?;
        assert!(err.to_string().contains("--server"), "{err}");
        let resolved = resolve(Some("h:1".into()), None, Some("opaque".into()), || Ok(None))?;
        assert_eq!(resolved.alias, None);
        Ok(())
    }

    #[test]
    fn debug_hides_the_token() {
        assert!(!format!("{:?}", sample()).contains("secret-token"));
    }
}
