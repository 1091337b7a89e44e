//! Accounts, users, v1 API keys and settings.

use opsq_domain::{AccountAlias, Roles};
use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{alias_at, location_at};
use super::SqliteStore;
use crate::types::{Account, ApiKey, NewUser, User, V1Session};
use crate::{now_ms, StoreError};

fn insert_account(conn: &Connection, account: &Account) -> Result<(), StoreError> {
    if let Some(parent) = &account.parent {
        let exists: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM accounts WHERE alias = ?1)",
            [parent.as_str()],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(StoreError::NotFound(format!("parent account {parent}")));
        }
    }
    let inserted = conn.execute(
        "INSERT INTO accounts (alias, location, parent, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (alias) DO NOTHING",
        params![
            account.alias.as_str(),
            account.location.as_str(),
            account.parent.as_ref().map(|p| p.as_str()),
            account.created_at,
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::Duplicate(format!("account {}", account.alias)));
    }
    Ok(())
}

fn require_account(conn: &Connection, alias: &AccountAlias) -> Result<(), StoreError> {
    let exists: bool =
        conn.query_row("SELECT EXISTS(SELECT 1 FROM accounts WHERE alias = ?1)", [alias.as_str()], |r| {
            r.get(0)
        })?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("account {alias}")))
    }
}

fn insert_user(conn: &Connection, user: &NewUser) -> Result<(), StoreError> {
    require_account(conn, &user.account)?;
    let inserted = conn.execute(
        "INSERT INTO users (username, account, password_hash, roles, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (username) DO NOTHING",
        params![
            user.username,
            user.account.as_str(),
            user.password_hash,
            user.roles.names().join(","),
            now_ms(),
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::Duplicate(format!("user {}", user.username)));
    }
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn setting_or_init(
        &self,
        key: String,
        init: impl FnOnce() -> String + Send + 'static,
    ) -> Result<String, StoreError> {
        if let Some(value) = self.read(|c| {
            c.query_row("SELECT value FROM settings WHERE key = ?1", [&key], |r| r.get(0)).optional()
        })? {
            return Ok(value);
        }
        // The caller's closure runs here, not on the writer thread, so a panic in it
        // cannot take the writer (and every later write) down.
        let value = init();
        self.write(move |c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                params![key, value],
            )?;
            Ok(c.query_row("SELECT value FROM settings WHERE key = ?1", [&key], |r| r.get(0))?)
        })
        .await
    }

    pub(crate) async fn bootstrap(&self, root: Account, admin: NewUser) -> Result<bool, StoreError> {
        self.write(move |c| {
            let empty: bool = c.query_row("SELECT NOT EXISTS(SELECT 1 FROM accounts)", [], |r| r.get(0))?;
            if !empty {
                return Ok(false);
            }
            insert_account(c, &root)?;
            insert_user(c, &admin)?;
            Ok(true)
        })
        .await
    }

    pub(crate) async fn create_account(&self, account: Account) -> Result<(), StoreError> {
        self.write(move |c| insert_account(c, &account)).await
    }

    pub(crate) fn account(&self, alias: &AccountAlias) -> Result<Option<Account>, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT alias, location, parent, created_at FROM accounts WHERE alias = ?1",
                [alias.as_str()],
                |r| {
                    Ok(Account {
                        alias: alias_at(r, 0)?,
                        location: location_at(r, 1)?,
                        parent: match r.get::<_, Option<String>>(2)? {
                            Some(_) => Some(alias_at(r, 2)?),
                            None => None,
                        },
                        created_at: r.get(3)?,
                    })
                },
            )
            .optional()
        })
    }

    pub(crate) fn is_within(&self, root: &AccountAlias, alias: &AccountAlias) -> Result<bool, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "WITH RECURSIVE up(alias, parent) AS (
                     SELECT alias, parent FROM accounts WHERE alias = ?1
                     UNION ALL
                     SELECT a.alias, a.parent FROM accounts a JOIN up ON a.alias = up.parent
                 )
                 SELECT EXISTS(SELECT 1 FROM up WHERE alias = ?2)",
            )?
            .query_row([alias.as_str(), root.as_str()], |r| r.get(0))
        })
    }

    pub(crate) fn subtree(&self, root: &AccountAlias) -> Result<Vec<AccountAlias>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "WITH RECURSIVE down(alias) AS (
                     SELECT alias FROM accounts WHERE alias = ?1
                     UNION ALL
                     SELECT a.alias FROM accounts a JOIN down ON a.parent = down.alias
                 )
                 SELECT alias FROM down ORDER BY alias",
            )?;
            let rows = stmt.query_map([root.as_str()], |r| alias_at(r, 0))?;
            rows.collect()
        })
    }

    pub(crate) async fn create_user(&self, user: NewUser) -> Result<(), StoreError> {
        self.write(move |c| insert_user(c, &user)).await
    }

    pub(crate) fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT username, account, password_hash, roles FROM users WHERE username = ?1")?
                .query_row([username], |r| {
                    let roles: String = r.get(3)?;
                    Ok(User {
                        username: r.get(0)?,
                        account: alias_at(r, 1)?,
                        password_hash: r.get(2)?,
                        roles: Roles::parse_list(roles.split(',').filter(|s| !s.is_empty()))
                            .unwrap_or_default(),
                    })
                })
                .optional()
        })
    }

    pub(crate) async fn create_api_key(&self, key: ApiKey) -> Result<(), StoreError> {
        self.write(move |c| {
            require_account(c, &key.account)?;
            c.execute(
                "INSERT INTO api_keys (key, account, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![key.key, key.account.as_str(), key.password_hash, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    pub(crate) fn api_key(&self, key: &str) -> Result<Option<ApiKey>, StoreError> {
        self.read(|c| {
            c.query_row("SELECT key, account, password_hash FROM api_keys WHERE key = ?1", [key], |r| {
                Ok(ApiKey { key: r.get(0)?, account: alias_at(r, 1)?, password_hash: r.get(2)? })
            })
            .optional()
        })
    }

    pub(crate) async fn create_v1_session(&self, session: V1Session) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO v1_sessions (token_hash, api_key, account, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    session.token_hash,
                    session.api_key,
                    session.account.as_str(),
                    session.created_at,
                    session.expires_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub(crate) fn v1_session(&self, token_hash: &str, now: i64) -> Result<Option<V1Session>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT token_hash, api_key, account, created_at, expires_at FROM v1_sessions
                 WHERE token_hash = ?1 AND expires_at > ?2",
            )?
            .query_row(params![token_hash, now], |r| {
                Ok(V1Session {
                    token_hash: r.get(0)?,
                    api_key: r.get(1)?,
                    account: alias_at(r, 2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            })
            .optional()
        })
    }

    pub(crate) async fn delete_v1_session(&self, token_hash: String) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM v1_sessions WHERE token_hash = ?1 OR expires_at <= ?2",
                params![token_hash, now_ms()],
            )?;
            Ok(())
        })
        .await
    }
}
