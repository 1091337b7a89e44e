//! Accounts, users, v1 API keys and settings.

use deadpool_postgres::GenericClient;
use opsq_domain::{AccountAlias, Roles};

use super::rows::alias_at;
use super::rows::location_at;
use super::{execute, query, query_one, query_opt, PostgresStore};
use crate::types::{Account, ApiKey, NewUser, User, V1Session};
use crate::{now_ms, StoreError};

async fn account_exists(c: &impl GenericClient, alias: &str) -> Result<bool, StoreError> {
    Ok(query_one(c, "SELECT EXISTS(SELECT 1 FROM accounts WHERE alias = $1)", &[&alias]).await?.try_get(0)?)
}

async fn insert_account(c: &impl GenericClient, account: &Account) -> Result<(), StoreError> {
    let parent = account.parent.as_ref().map(|p| p.as_str());
    if let Some(parent) = parent {
        if !account_exists(c, parent).await? {
            return Err(StoreError::NotFound(format!("parent account {parent}")));
        }
    }
    // ON CONFLICT waits for a concurrent insert of the same alias, then does nothing:
    // the loser sees a duplicate, never a constraint error mid-transaction.
    let inserted = execute(
        c,
        "INSERT INTO accounts (alias, location, parent, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (alias) DO NOTHING",
        &[&account.alias.as_str(), &account.location.as_str(), &parent, &account.created_at],
    )
    .await?;
    if inserted == 0 {
        return Err(StoreError::Duplicate(format!("account {}", account.alias)));
    }
    Ok(())
}

async fn require_account(c: &impl GenericClient, alias: &AccountAlias) -> Result<(), StoreError> {
    if account_exists(c, alias.as_str()).await? {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("account {alias}")))
    }
}

/// The key usernames are matched by: ASCII letters lowered, as SQLite's `NOCASE`.
fn username_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

async fn insert_user(c: &impl GenericClient, user: &NewUser) -> Result<(), StoreError> {
    require_account(c, &user.account).await?;
    let inserted = execute(
        c,
        "INSERT INTO users (username_key, username, account, password_hash, roles, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username_key) DO NOTHING",
        &[
            &username_key(&user.username),
            &user.username,
            &user.account.as_str(),
            &user.password_hash,
            &user.roles.names().join(","),
            &now_ms(),
        ],
    )
    .await?;
    if inserted == 0 {
        return Err(StoreError::Duplicate(format!("user {}", user.username)));
    }
    Ok(())
}

impl PostgresStore {
    pub(crate) async fn setting_or_init(
        &self,
        key: String,
        init: impl FnOnce() -> String + Send + 'static,
    ) -> Result<String, StoreError> {
        const READ: &str = "SELECT value FROM settings WHERE key = $1";
        {
            let client = self.client().await?;
            if let Some(row) = query_opt(&client, READ, &[&key]).await? {
                return Ok(row.try_get(0)?);
            }
        }
        // The caller's closure runs with no connection held, so a panic in it (or a
        // slow init) costs the pool nothing.
        let value = init();
        let client = self.client().await?;
        // When another node stored a value first, ON CONFLICT waited for its commit,
        // so the read that follows (a new statement) sees that value.
        execute(
            &client,
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&key, &value],
        )
        .await?;
        Ok(query_one(&client, READ, &[&key]).await?.try_get(0)?)
    }

    pub(crate) async fn bootstrap(&self, root: Account, admin: NewUser) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // "No account yet" must stay true until this commits, against other nodes'
        // bootstraps and account creations alike: this lock mode conflicts with
        // itself and with every insert into accounts, but not with reads.
        tx.batch_execute("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE").await?;
        let empty: bool =
            query_one(&tx, "SELECT NOT EXISTS(SELECT 1 FROM accounts)", &[]).await?.try_get(0)?;
        if !empty {
            return Ok(false);
        }
        insert_account(&tx, &root).await?;
        insert_user(&tx, &admin).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn create_account(&self, account: Account) -> Result<(), StoreError> {
        let client = self.client().await?;
        // No transaction needed: accounts are never deleted, so a parent found by
        // the check is still there for the insert.
        insert_account(&client, &account).await
    }

    pub(crate) async fn account(&self, alias: &AccountAlias) -> Result<Option<Account>, StoreError> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT alias, location, parent, created_at FROM accounts WHERE alias = $1",
            &[&alias.as_str()],
        )
        .await?;
        row.map(|r| {
            Ok(Account {
                alias: alias_at(&r, 0)?,
                location: location_at(&r, 1)?,
                parent: match r.try_get::<_, Option<&str>>(2)? {
                    Some(_) => Some(alias_at(&r, 2)?),
                    None => None,
                },
                created_at: r.try_get(3)?,
            })
        })
        .transpose()
    }

    pub(crate) async fn is_within(
        &self,
        root: &AccountAlias,
        alias: &AccountAlias,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(query_one(
            &client,
            "WITH RECURSIVE up(alias, parent) AS (
                 SELECT alias, parent FROM accounts WHERE alias = $1
                 UNION ALL
                 SELECT a.alias, a.parent FROM accounts a JOIN up ON a.alias = up.parent
             )
             SELECT EXISTS(SELECT 1 FROM up WHERE alias = $2)",
            &[&alias.as_str(), &root.as_str()],
        )
        .await?
        .try_get(0)?)
    }

    pub(crate) async fn subtree(&self, root: &AccountAlias) -> Result<Vec<AccountAlias>, StoreError> {
        let client = self.client().await?;
        // Ordered bytewise, as SQLite's BINARY collation orders, whatever the
        // database's collation.
        let rows = query(
            &client,
            r#"WITH RECURSIVE down(alias) AS (
                   SELECT alias FROM accounts WHERE alias = $1
                   UNION ALL
                   SELECT a.alias FROM accounts a JOIN down ON a.parent = down.alias
               )
               SELECT alias FROM down ORDER BY alias COLLATE "C""#,
            &[&root.as_str()],
        )
        .await?;
        rows.iter().map(|r| alias_at(r, 0)).collect()
    }

    pub(crate) async fn create_user(&self, user: NewUser) -> Result<(), StoreError> {
        let client = self.client().await?;
        insert_user(&client, &user).await
    }

    pub(crate) async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT username, account, password_hash, roles FROM users WHERE username_key = $1",
            &[&username_key(username)],
        )
        .await?;
        row.map(|r| {
            let roles: &str = r.try_get(3)?;
            Ok(User {
                username: r.try_get(0)?,
                account: alias_at(&r, 1)?,
                password_hash: r.try_get(2)?,
                roles: Roles::parse_list(roles.split(',').filter(|s| !s.is_empty())).unwrap_or_default(),
            })
        })
        .transpose()
    }

    pub(crate) async fn create_api_key(&self, key: ApiKey) -> Result<(), StoreError> {
        let client = self.client().await?;
        require_account(&client, &key.account).await?;
        execute(
            &client,
            "INSERT INTO api_keys (key, account, password_hash, created_at) VALUES ($1, $2, $3, $4)",
            &[&key.key, &key.account.as_str(), &key.password_hash, &now_ms()],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn api_key(&self, key: &str) -> Result<Option<ApiKey>, StoreError> {
        let client = self.client().await?;
        let row =
            query_opt(&client, "SELECT key, account, password_hash FROM api_keys WHERE key = $1", &[&key])
                .await?;
        row.map(|r| {
            Ok(ApiKey { key: r.try_get(0)?, account: alias_at(&r, 1)?, password_hash: r.try_get(2)? })
        })
        .transpose()
    }

    pub(crate) async fn create_v1_session(&self, session: V1Session) -> Result<(), StoreError> {
        let client = self.client().await?;
        execute(
            &client,
            "INSERT INTO v1_sessions (token_hash, api_key, account, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &session.token_hash,
                &session.api_key,
                &session.account.as_str(),
                &session.created_at,
                &session.expires_at,
            ],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn v1_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<V1Session>, StoreError> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT token_hash, api_key, account, created_at, expires_at FROM v1_sessions
             WHERE token_hash = $1 AND expires_at > $2",
            &[&token_hash, &now],
        )
        .await?;
        row.map(|r| {
            Ok(V1Session {
                token_hash: r.try_get(0)?,
                api_key: r.try_get(1)?,
                account: alias_at(&r, 2)?,
                created_at: r.try_get(3)?,
                expires_at: r.try_get(4)?,
            })
        })
        .transpose()
    }

    pub(crate) async fn delete_v1_session(&self, token_hash: String) -> Result<(), StoreError> {
        let client = self.client().await?;
        execute(
            &client,
            "DELETE FROM v1_sessions WHERE token_hash = $1 OR expires_at <= $2",
            &[&token_hash, &now_ms()],
        )
        .await?;
        Ok(())
    }
}
