//! Which pull queue carries an entity's jobs: the model's entities routed to the settings' queue
//! URLs. Its own module so that runs, jobs and the sweep can all send jobs without importing
//! each other.

use crate::model::Entity;
use crate::settings::Queues;

/// Which pull queue carries an entity's jobs.
pub trait EntityQueue {
    fn queue(self, queues: &Queues) -> &str;
}

impl EntityQueue for Entity {
    fn queue(self, queues: &Queues) -> &str {
        match self {
            Entity::Categories | Entity::Products => &queues.catalog,
            Entity::Customers => &queues.customers,
            Entity::Invoices => &queues.invoices,
        }
    }
}
