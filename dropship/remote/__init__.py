"""How dropship reaches the server: the SSH target and the command builders."""
