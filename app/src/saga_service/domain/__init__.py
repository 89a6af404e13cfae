"""The pure domain: orders, stock, payments and the order saga. No I/O here."""
