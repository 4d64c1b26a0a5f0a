//! What a run can sync. One definition: [`mapping::api::Entity`] (the service API's, whose
//! serialized form — `categories`, `products`, `customers`, `invoices` — is also the queue
//! messages' and the store's), with the engine's rule about connections added by a trait.
//! Order matters: categories before products (R-CAT-1).

use store::Connection;

pub use mapping::api::Entity;

/// The engine's rules about an entity that need a connection.
pub trait EntitySwitch {
    /// R-CON-1/R-CON-6: products bring their categories; orders bring the invoice pull.
    fn is_switched_on(&self, conn: &Connection) -> bool;
}

impl EntitySwitch for Entity {
    fn is_switched_on(&self, conn: &Connection) -> bool {
        match *self {
            Entity::Categories | Entity::Products => conn.sync.products,
            Entity::Customers => conn.sync.customers,
            Entity::Invoices => conn.sync.orders,
        }
    }
}
