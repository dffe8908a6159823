-- wrk script: what a real Commerce sends on add-to-cart with a hook without `fields`:
-- the whole observer.checkout_cart_product_add_before event, ~3 KB of product
-- attributes (the recorded fixture the tests use; wrk runs from the repository root).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open("webhook/tests/fixtures/add-to-cart-simple.json", "rb"))
wrk.body = file:read("*a")
file:close()
