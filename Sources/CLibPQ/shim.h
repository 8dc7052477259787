// libpq's types and prototypes; the functions are resolved with dlsym (see PostgresClient.swift).
#include <postgresql/libpq-fe.h>
