//! Source connections (a Slack workspace, …) and the checks that say what is tracked in them.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};

use super::entity::{check, connection};
use super::{Result, Store, StoreError};
use crate::domain::now;

/// A connection to create or replace. Credentials arrive sealed by `crypto`.
pub struct NewConnection<'a> {
    pub organization_id: i64,
    pub kind: &'a str,
    pub external_id: &'a str,
    pub name: &'a str,
    pub credential_ciphertext: String,
    pub signing_secret_ciphertext: Option<String>,
    pub fingerprint: String,
}

pub struct NewCheck<'a> {
    pub organization_id: i64,
    pub connection_id: i64,
    pub kind: &'a str,
    pub subject: &'a str,
    pub interval_secs: i32,
}

#[derive(Default)]
pub struct CheckPatch {
    pub enabled: Option<bool>,
    pub interval_secs: Option<i32>,
}

impl Store {
    /// Creates the connection, or replaces the credentials of this organization's connection to
    /// the same source account (a token rotation). Another organization's connection to the same
    /// account is a `Conflict`.
    pub async fn upsert_connection(&self, new: NewConnection<'_>) -> Result<connection::Model> {
        let existing = connection::Entity::find()
            .filter(connection::Column::Kind.eq(new.kind))
            .filter(connection::Column::ExternalId.eq(new.external_id))
            .one(&self.db)
            .await?;
        let now = now();
        match existing {
            Some(c) if c.organization_id != new.organization_id => Err(StoreError::Conflict(
                "this workspace is connected by another organization".into(),
            )),
            Some(c) => {
                let mut am: connection::ActiveModel = c.into();
                am.name = Set(new.name.to_owned());
                am.credential_ciphertext = Set(new.credential_ciphertext);
                am.signing_secret_ciphertext = Set(new.signing_secret_ciphertext);
                am.fingerprint = Set(new.fingerprint);
                am.status = Set("active".into());
                am.last_error = Set(None);
                am.updated_at = Set(now);
                Ok(am.update(&self.db).await?)
            }
            None => connection::ActiveModel {
                organization_id: Set(new.organization_id),
                kind: Set(new.kind.to_owned()),
                external_id: Set(new.external_id.to_owned()),
                name: Set(new.name.to_owned()),
                credential_ciphertext: Set(new.credential_ciphertext),
                signing_secret_ciphertext: Set(new.signing_secret_ciphertext),
                fingerprint: Set(new.fingerprint),
                status: Set("active".into()),
                last_error: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(&self.db)
            .await
            .map_err(|e| StoreError::from_write(e, "connection")),
        }
    }

    pub async fn connection(&self, id: i64) -> Result<Option<connection::Model>> {
        Ok(connection::Entity::find_by_id(id).one(&self.db).await?)
    }

    pub async fn connection_by_external_id(
        &self,
        kind: &str,
        external_id: &str,
    ) -> Result<Option<connection::Model>> {
        Ok(connection::Entity::find()
            .filter(connection::Column::Kind.eq(kind))
            .filter(connection::Column::ExternalId.eq(external_id))
            .one(&self.db)
            .await?)
    }

    /// Connections of one organization, or of all when `organization_id` is `None` (the poller).
    pub async fn connections(
        &self,
        organization_id: Option<i64>,
    ) -> Result<Vec<connection::Model>> {
        let mut q = connection::Entity::find().order_by_asc(connection::Column::Id);
        if let Some(org) = organization_id {
            q = q.filter(connection::Column::OrganizationId.eq(org));
        }
        Ok(q.all(&self.db).await?)
    }

    /// Records the outcome of talking to the source: `status` `active` clears the error.
    pub async fn set_connection_status(
        &self,
        id: i64,
        status: &str,
        last_error: Option<&str>,
    ) -> Result<()> {
        let Some(c) = connection::Entity::find_by_id(id).one(&self.db).await? else {
            return Err(StoreError::NotFound);
        };
        if c.status == status && c.last_error.as_deref() == last_error {
            return Ok(());
        }
        let mut am: connection::ActiveModel = c.into();
        am.status = Set(status.to_owned());
        am.last_error = Set(last_error.map(str::to_owned));
        am.updated_at = Set(now());
        am.update(&self.db).await?;
        Ok(())
    }

    /// Replaces the sealed credential after the source itself renewed it (an OAuth2 refresh).
    /// `updated_at` stays: it marks an admin's replacement, which restarts the poller.
    pub async fn store_refreshed_credential(&self, id: i64, ciphertext: String) -> Result<()> {
        let res = connection::Entity::update_many()
            .col_expr(
                connection::Column::CredentialCiphertext,
                sea_orm::sea_query::Expr::value(ciphertext),
            )
            .filter(connection::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Deletes a connection and, by cascade, its checks and Slack users.
    pub async fn delete_connection(&self, organization_id: i64, id: i64) -> Result<()> {
        let res = connection::Entity::delete_many()
            .filter(connection::Column::Id.eq(id))
            .filter(connection::Column::OrganizationId.eq(organization_id))
            .exec(&self.db)
            .await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Creates a check; `Conflict` when the subject is already tracked in that connection.
    pub async fn create_check(&self, new: NewCheck<'_>) -> Result<check::Model> {
        check::ActiveModel {
            organization_id: Set(new.organization_id),
            connection_id: Set(new.connection_id),
            kind: Set(new.kind.to_owned()),
            subject: Set(new.subject.to_owned()),
            enabled: Set(true),
            interval_secs: Set(new.interval_secs),
            last_polled_at: Set(None),
            last_error: Set(None),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(|e| StoreError::from_write(e, "this subject is already tracked"))
    }

    /// Tracks everyone in a connection (a `*` check of its kind) unless it has checks already: a
    /// new connection watches its whole workspace, site or mailbox; a replaced one keeps what an
    /// admin chose.
    pub async fn track_everyone_unless_checked(
        &self,
        conn: &connection::Model,
        interval_secs: i32,
    ) -> Result<()> {
        if self.checks(None, Some(conn.id), None).await?.is_empty() {
            self.create_check(NewCheck {
                organization_id: conn.organization_id,
                connection_id: conn.id,
                kind: &conn.kind,
                subject: "*",
                interval_secs,
            })
            .await?;
        }
        Ok(())
    }

    pub async fn check(&self, organization_id: i64, id: i64) -> Result<check::Model> {
        check::Entity::find_by_id(id)
            .filter(check::Column::OrganizationId.eq(organization_id))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Checks of one organization (optionally of one kind), or of one connection.
    pub async fn checks(
        &self,
        organization_id: Option<i64>,
        connection_id: Option<i64>,
        kind: Option<&str>,
    ) -> Result<Vec<check::Model>> {
        let mut q = check::Entity::find().order_by_asc(check::Column::Id);
        if let Some(org) = organization_id {
            q = q.filter(check::Column::OrganizationId.eq(org));
        }
        if let Some(c) = connection_id {
            q = q.filter(check::Column::ConnectionId.eq(c));
        }
        if let Some(k) = kind {
            q = q.filter(check::Column::Kind.eq(k));
        }
        Ok(q.all(&self.db).await?)
    }

    pub async fn update_check(
        &self,
        organization_id: i64,
        id: i64,
        patch: CheckPatch,
    ) -> Result<check::Model> {
        let found = self.check(organization_id, id).await?;
        let mut am: check::ActiveModel = found.into();
        if let Some(e) = patch.enabled {
            am.enabled = Set(e);
        }
        if let Some(i) = patch.interval_secs {
            am.interval_secs = Set(i);
        }
        Ok(am.update(&self.db).await?)
    }

    pub async fn delete_check(&self, organization_id: i64, id: i64) -> Result<()> {
        let res = check::Entity::delete_many()
            .filter(check::Column::Id.eq(id))
            .filter(check::Column::OrganizationId.eq(organization_id))
            .exec(&self.db)
            .await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Stamps every check of a connection with the outcome of its last poll.
    pub async fn record_poll(
        &self,
        connection_id: i64,
        at: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<()> {
        check::Entity::update_many()
            .col_expr(
                check::Column::LastPolledAt,
                sea_orm::sea_query::Expr::value(at),
            )
            .col_expr(
                check::Column::LastError,
                sea_orm::sea_query::Expr::value(error.map(str::to_owned)),
            )
            .filter(check::Column::ConnectionId.eq(connection_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
