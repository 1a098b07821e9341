"""The first test of hello.py's stop: a request in flight at Ctrl+C is answered."""


async def test_ctrl_c_waits_for_the_request_in_flight(graceful_server):
    server = graceful_server("hello:app")      # `graceful serve hello:app` on a free port
    held = await server.hold("/slow?s=1")      # returns once the handler is running
    server.stop("SIGINT")                      # what Ctrl+C sends
    response = await held.response()
    assert response.status == 200 and response.body == b"done after 1 s\n"
    assert await server.exited() == 0          # 0: stopped cleanly, nothing cut
