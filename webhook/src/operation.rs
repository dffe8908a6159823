//! The answers Commerce understands from a synchronous webhook.
//!
//! Commerce reads an HTTP 200 whose body is one operation (or an array of them).
//! check-stock only ever needs the two flow-control operations: `success` lets the
//! add-to-cart go on, `exception` aborts it and shows `message` to the shopper.

use serde::Serialize;

/// One Commerce webhook operation, serialised exactly as Commerce expects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Operation {
    Success,
    Exception {
        message: String,
        /// An exception class such as
        /// `Magento\Framework\GraphQl\Exception\GraphQlInputException`, so that the
        /// message reaches the shopper through GraphQL; left out when not configured.
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        exception_type: Option<String>,
    },
}

impl Operation {
    pub fn exception(message: impl Into<String>, exception_type: Option<&str>) -> Self {
        Operation::Exception {
            message: message.into(),
            exception_type: exception_type.map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn success_is_the_bare_op() {
        assert_eq!(
            serde_json::to_value(Operation::Success).unwrap(),
            json!({"op": "success"})
        );
    }

    #[test]
    fn exception_carries_message_and_optional_type() {
        let plain = Operation::exception("out of stock", None);
        assert_eq!(
            serde_json::to_value(plain).unwrap(),
            json!({"op": "exception", "message": "out of stock"})
        );
        let typed = Operation::exception("out of stock", Some("Magento\\GraphQlInputException"));
        assert_eq!(
            serde_json::to_value(typed).unwrap(),
            json!({"op": "exception", "message": "out of stock", "type": "Magento\\GraphQlInputException"})
        );
    }
}
