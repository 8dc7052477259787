// libpq's types and prototypes; the functions are resolved with dlsym (see PostgresClient.swift).
#include <libpq-fe.h>
