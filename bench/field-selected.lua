-- wrk script: what Commerce sends on add-to-cart through a hook whose `fields` select
-- the SKU, product type and quantity (renamed without the `data.` prefix, as
-- Adobe's examples do), the small payload a field-selected hook makes.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"product":{"sku":"MS-01","type_id":"simple"},"info":{"qty":"2"}}'
