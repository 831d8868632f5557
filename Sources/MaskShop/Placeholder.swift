// MaskShop
