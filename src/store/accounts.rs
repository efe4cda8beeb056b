//! Organizations, accounts, bot tokens, refresh tokens and revoked access tokens.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};

use super::entity::{account, api_token, organization, refresh_token, revoked_jti};
use super::{Result, Store, StoreError};
use crate::domain::now;

/// An account to create. The password is already hashed by `auth`.
pub struct NewAccount<'a> {
    pub organization_id: i64,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
}

/// A bot token as the store hands it back: what `auth` needs to decide, nothing secret.
pub type ApiTokenRecord = api_token::Model;

impl Store {
    /// The organization named `name`, created if it does not exist yet.
    pub async fn ensure_organization(&self, name: &str) -> Result<organization::Model> {
        if let Some(org) = organization::Entity::find()
            .filter(organization::Column::Name.eq(name))
            .one(&self.db)
            .await?
        {
            return Ok(org);
        }
        let org = organization::ActiveModel {
            name: Set(name.to_owned()),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(|e| StoreError::from_write(e, "organization name"))?;
        Ok(org)
    }

    pub async fn organization(&self, id: i64) -> Result<Option<organization::Model>> {
        Ok(organization::Entity::find_by_id(id).one(&self.db).await?)
    }

    pub async fn organization_by_name(&self, name: &str) -> Result<Option<organization::Model>> {
        Ok(organization::Entity::find()
            .filter(organization::Column::Name.eq(name))
            .one(&self.db)
            .await?)
    }

    /// Creates an account; `Conflict` when the email is taken.
    pub async fn create_account(&self, new: NewAccount<'_>) -> Result<account::Model> {
        account::ActiveModel {
            organization_id: Set(new.organization_id),
            email: Set(new.email.to_lowercase()),
            password_hash: Set(new.password_hash.to_owned()),
            role: Set(new.role.to_owned()),
            disabled: Set(false),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(|e| StoreError::from_write(e, "email already registered"))
    }

    pub async fn account_by_email(&self, email: &str) -> Result<Option<account::Model>> {
        Ok(account::Entity::find()
            .filter(account::Column::Email.eq(email.to_lowercase()))
            .one(&self.db)
            .await?)
    }

    pub async fn account(&self, id: i64) -> Result<Option<account::Model>> {
        Ok(account::Entity::find_by_id(id).one(&self.db).await?)
    }

    pub async fn accounts(&self, organization_id: i64) -> Result<Vec<account::Model>> {
        Ok(account::Entity::find()
            .filter(account::Column::OrganizationId.eq(organization_id))
            .order_by_asc(account::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Changes role and/or disabled flag of an account within `organization_id`.
    pub async fn update_account(
        &self,
        organization_id: i64,
        id: i64,
        role: Option<&str>,
        disabled: Option<bool>,
    ) -> Result<account::Model> {
        let found = account::Entity::find_by_id(id)
            .filter(account::Column::OrganizationId.eq(organization_id))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut am: account::ActiveModel = found.into();
        if let Some(r) = role {
            am.role = Set(r.to_owned());
        }
        if let Some(d) = disabled {
            am.disabled = Set(d);
        }
        Ok(am.update(&self.db).await?)
    }

    pub async fn create_api_token(
        &self,
        organization_id: i64,
        name: &str,
        token_hash: &str,
        role: &str,
        topics: Option<&[String]>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<api_token::Model> {
        api_token::ActiveModel {
            organization_id: Set(organization_id),
            name: Set(name.to_owned()),
            token_hash: Set(token_hash.to_owned()),
            role: Set(role.to_owned()),
            topics: Set(topics.map(|t| serde_json::to_string(t).unwrap_or_default())),
            expires_at: Set(expires_at),
            revoked_at: Set(None),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(|e| StoreError::from_write(e, "api token"))
    }

    pub async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<api_token::Model>> {
        Ok(api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(token_hash))
            .one(&self.db)
            .await?)
    }

    pub async fn api_token(&self, id: i64) -> Result<Option<api_token::Model>> {
        Ok(api_token::Entity::find_by_id(id).one(&self.db).await?)
    }

    pub async fn api_tokens(&self, organization_id: i64) -> Result<Vec<api_token::Model>> {
        Ok(api_token::Entity::find()
            .filter(api_token::Column::OrganizationId.eq(organization_id))
            .order_by_asc(api_token::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Marks a bot token revoked; `NotFound` when it is not this organization's.
    pub async fn revoke_api_token(&self, organization_id: i64, id: i64) -> Result<()> {
        let found = api_token::Entity::find_by_id(id)
            .filter(api_token::Column::OrganizationId.eq(organization_id))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut am: api_token::ActiveModel = found.into();
        am.revoked_at = Set(Some(now()));
        am.update(&self.db).await?;
        Ok(())
    }

    pub async fn create_refresh_token(
        &self,
        account_id: i64,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        refresh_token::ActiveModel {
            account_id: Set(account_id),
            token_hash: Set(token_hash.to_owned()),
            expires_at: Set(expires_at),
            revoked_at: Set(None),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// Atomically takes a live refresh token out of use and returns its account id, so each refresh
    /// token is spent exactly once (rotation).
    pub async fn spend_refresh_token(&self, token_hash: &str) -> Result<Option<i64>> {
        let (_turn, txn) = self.begin_write().await?;
        let found = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(token_hash))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .filter(refresh_token::Column::ExpiresAt.gt(now()))
            .one(&txn)
            .await?;
        let Some(found) = found else {
            txn.rollback().await?;
            return Ok(None);
        };
        let account_id = found.account_id;
        let mut am: refresh_token::ActiveModel = found.into();
        am.revoked_at = Set(Some(now()));
        am.update(&txn).await?;
        txn.commit().await?;
        Ok(Some(account_id))
    }

    pub async fn revoke_jti(&self, jti: &str, expires_at: DateTime<Utc>) -> Result<()> {
        let row = revoked_jti::ActiveModel {
            jti: Set(jti.to_owned()),
            expires_at: Set(expires_at),
        };
        revoked_jti::Entity::insert(row)
            .on_conflict_do_nothing()
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// Revoked access tokens that have not expired yet: loaded at start-up into `auth`'s memory.
    pub async fn revoked_jtis(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        Ok(revoked_jti::Entity::find()
            .filter(revoked_jti::Column::ExpiresAt.gt(now()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| (r.jti, r.expires_at))
            .collect())
    }
}
