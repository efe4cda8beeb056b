//! Source identities: who a Jira account or a Gmail mailbox is. One person across Slack, Jira and
//! Gmail is found by email (Slack's profile email is the person's), and an admin can pin another
//! choice, which automatic linking then leaves alone.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};

use super::entity::{person, source_identity};
use super::{Result, Store, StoreError};
use crate::domain::now;

/// An account as a source lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewIdentity {
    pub external_id: String,
    pub email: Option<String>,
    pub display_name: String,
}

pub type Identity = source_identity::Model;

impl Store {
    /// Records the accounts a source listed and links each unpinned one to the person of the
    /// organization with the same email (none when nobody has it). Returns every identity of the
    /// connection, listed now or before.
    pub async fn sync_identities(
        &self,
        connection_id: i64,
        organization_id: i64,
        found: &[NewIdentity],
    ) -> Result<Vec<Identity>> {
        let (_turn, txn) = self.begin_write().await?;
        let emails: Vec<String> = found
            .iter()
            .filter_map(|i| i.email.as_deref().map(str::to_lowercase))
            .collect();
        let people = people_by_email(&txn, organization_id, &emails).await?;
        let mut existing: HashMap<String, Identity> = source_identity::Entity::find()
            .filter(source_identity::Column::ConnectionId.eq(connection_id))
            .all(&txn)
            .await?
            .into_iter()
            .map(|i| (i.external_id.clone(), i))
            .collect();
        for new in found {
            let email = new.email.as_deref().map(str::to_lowercase);
            let auto = email.as_ref().and_then(|e| people.get(e).copied());
            match existing.remove(&new.external_id) {
                Some(row) => {
                    let person_id = if row.manual { row.person_id } else { auto };
                    if row.email == email
                        && row.display_name == new.display_name
                        && row.person_id == person_id
                    {
                        continue;
                    }
                    let mut am: source_identity::ActiveModel = row.into();
                    am.email = Set(email);
                    am.display_name = Set(new.display_name.clone());
                    am.person_id = Set(person_id);
                    am.updated_at = Set(now());
                    am.update(&txn).await?;
                }
                None => {
                    source_identity::ActiveModel {
                        organization_id: Set(organization_id),
                        connection_id: Set(connection_id),
                        external_id: Set(new.external_id.clone()),
                        email: Set(email),
                        display_name: Set(new.display_name.clone()),
                        person_id: Set(auto),
                        manual: Set(false),
                        updated_at: Set(now()),
                        ..Default::default()
                    }
                    .insert(&txn)
                    .await?;
                }
            }
        }
        txn.commit().await?;
        self.identities(connection_id).await
    }

    /// Every identity of a connection, by external id.
    pub async fn identities(&self, connection_id: i64) -> Result<Vec<Identity>> {
        Ok(source_identity::Entity::find()
            .filter(source_identity::Column::ConnectionId.eq(connection_id))
            .order_by_asc(source_identity::Column::ExternalId)
            .all(&self.db)
            .await?)
    }

    /// Identities of one person in any source (the REST detail view).
    pub async fn identities_of(&self, person_id: i64) -> Result<Vec<Identity>> {
        Ok(source_identity::Entity::find()
            .filter(source_identity::Column::PersonId.eq(person_id))
            .order_by_asc(source_identity::Column::ConnectionId)
            .all(&self.db)
            .await?)
    }

    /// An admin's choice: `person_id` is this account's person (`None`: nobody), whatever the
    /// emails say. `NotFound` when the identity or the person is not the organization's.
    pub async fn pin_identity(
        &self,
        organization_id: i64,
        connection_id: i64,
        external_id: &str,
        person_id: Option<i64>,
    ) -> Result<Identity> {
        let row = self
            .identity_in_org(organization_id, connection_id, external_id)
            .await?;
        if let Some(p) = person_id {
            let found = person::Entity::find_by_id(p).one(&self.db).await?;
            if found.is_none_or(|f| f.organization_id != organization_id) {
                return Err(StoreError::NotFound);
            }
        }
        let mut am: source_identity::ActiveModel = row.into();
        am.person_id = Set(person_id);
        am.manual = Set(true);
        am.updated_at = Set(now());
        Ok(am.update(&self.db).await?)
    }

    /// Drops an admin's choice: the identity is linked by email again.
    pub async fn unpin_identity(
        &self,
        organization_id: i64,
        connection_id: i64,
        external_id: &str,
    ) -> Result<Identity> {
        let row = self
            .identity_in_org(organization_id, connection_id, external_id)
            .await?;
        let emails: Vec<String> = row.email.iter().cloned().collect();
        let people = people_by_email(&self.db, organization_id, &emails).await?;
        let auto = row.email.as_ref().and_then(|e| people.get(e).copied());
        let mut am: source_identity::ActiveModel = row.into();
        am.person_id = Set(auto);
        am.manual = Set(false);
        am.updated_at = Set(now());
        Ok(am.update(&self.db).await?)
    }

    async fn identity_in_org(
        &self,
        organization_id: i64,
        connection_id: i64,
        external_id: &str,
    ) -> Result<Identity> {
        source_identity::Entity::find()
            .filter(source_identity::Column::OrganizationId.eq(organization_id))
            .filter(source_identity::Column::ConnectionId.eq(connection_id))
            .filter(source_identity::Column::ExternalId.eq(external_id))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)
    }
}

/// The person of each email (the oldest when two share one).
async fn people_by_email<C: ConnectionTrait>(
    db: &C,
    organization_id: i64,
    emails: &[String],
) -> Result<HashMap<String, i64>> {
    let mut out = HashMap::new();
    for chunk in emails.chunks(500) {
        let rows = person::Entity::find()
            .filter(person::Column::OrganizationId.eq(organization_id))
            .filter(person::Column::Email.is_in(chunk.to_vec()))
            .order_by_desc(person::Column::Id)
            .all(db)
            .await?;
        for p in rows {
            if let Some(e) = p.email {
                out.insert(e, p.id);
            }
        }
    }
    Ok(out)
}
