-- wrk script: the check-stock call Commerce makes when a shopper adds to cart.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"data":{"cart_id":"42","items":[{"item_id":1,"sku":"MS-01","qty":2},{"item_id":2,"sku":"WJ-12-M-Blue","qty":"1"}]}}'
