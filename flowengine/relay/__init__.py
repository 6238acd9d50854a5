"""The RELAY client: a sans-I/O protocol core, the websocket connection, Call handles."""
