//! The Commerce events the webhook understands and the hook fields it reads of
//! each: one list, so that the hook `commerce-config` prints selects exactly what
//! the payload parser reads. Part of the contract (built without the server), since
//! the operator prints hooks from it.

/// The Commerce events whose payloads the webhook reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockEvent {
    /// One product being added: the quantity asked for now (a delta), no cart.
    CheckoutCartProductAddBefore,
    /// One cart line being saved (on add and on quantity update): its total.
    SalesQuoteItemSaveBefore,
}

/// One `fields` entry of a hook: Commerce sends the value at `source` under `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookField {
    pub name: &'static str,
    pub source: &'static str,
}

const fn field(name: &'static str, source: &'static str) -> HookField {
    HookField { name, source }
}

impl StockEvent {
    /// The hook's `method`, as webhooks.xml and the REST API name it.
    pub fn method(self) -> &'static str {
        match self {
            StockEvent::CheckoutCartProductAddBefore => "observer.checkout_cart_product_add_before",
            StockEvent::SalesQuoteItemSaveBefore => "observer.sales_quote_item_save_before",
        }
    }

    /// Exactly the paths `payload::parse_check_stock` reads of the event, renamed without the
    /// `data.` prefix like Adobe's examples: a hook selecting these sends a small
    /// payload this module understands. `type_id` tells composite products apart.
    pub fn fields(self) -> &'static [HookField] {
        match self {
            StockEvent::CheckoutCartProductAddBefore => &PRODUCT_ADD_FIELDS,
            StockEvent::SalesQuoteItemSaveBefore => &QUOTE_ITEM_FIELDS,
        }
    }
}

const PRODUCT_ADD_FIELDS: [HookField; 3] = [
    field("product.sku", "data.product.sku"),
    field("product.type_id", "data.product.type_id"),
    field("info.qty", "data.info.qty"),
];

const QUOTE_ITEM_FIELDS: [HookField; 3] = [
    field("item.sku", "data.item.sku"),
    field("item.qty", "data.item.qty"),
    field("item.quote_id", "data.item.quote_id"),
];
