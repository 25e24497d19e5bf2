"""Page-number paging of API lists (`?page=`, `?page_size=` up to 200)."""

from rest_framework.pagination import PageNumberPagination


class PagePagination(PageNumberPagination):
    """`?page=N&page_size=M`, page size capped so no request can ask for a whole table."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
