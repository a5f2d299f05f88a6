"""Runnable examples: `python -m mandate_verify.examples.po_service` (the purchase-order
service of examples/src/bin/po-service.rs) and `python -m mandate_verify.examples.agent`."""
