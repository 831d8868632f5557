print("gateway: config loader pending")
