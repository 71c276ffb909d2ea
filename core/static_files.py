"""WhiteNoise's static files, from a middleware that runs in either mode.

WhiteNoise's middleware is sync-only. Under ASGI (uvicorn), Django builds the rest of
the chain around it in async mode, so every request crossed threads three times: into a
thread for WhiteNoise, back to the event loop for the async middleware after it, and
into a thread again for the (sync) view. With every middleware async-capable a request
enters a thread once, for its view. The lookup is WhiteNoise's own (a dict when files
are collected; a stat under DEBUG's autorefresh), and so is the response.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, *args, **kwargs):
        super().__init__(get_response, *args, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        static_file = self._static_file(request)
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)

    def _static_file(self, request):
        if self.autorefresh:
            return self.find_file(request.path_info)
        return self.files.get(request.path_info)
