// playground script
