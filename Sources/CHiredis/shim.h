// hiredis' types and prototypes; the functions are resolved with dlsym (see RedisClient.swift).
#include <hiredis/hiredis.h>
