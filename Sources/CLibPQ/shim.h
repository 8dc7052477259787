// libpq's types and prototypes; the functions are resolved with dlsym (see PostgresClient.swift).
// No -I flag is passed (see Package.swift): Debian puts the header in /usr/include/postgresql, other
// distributions in /usr/include. Its own includes are quoted and resolve beside it.
#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h>
#endif
