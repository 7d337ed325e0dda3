/* Tests common/jwt.c: tokens minted independently as PyJWT mints them, the
 * RFC 7515 A.1 example, and one vector per JWT row of HARDENING.md. */
#include "common/jwt.h"
#include "tap.h"

/*
 * Reference tokens, computed outside this code with python3's standard
 * library exactly as PyJWT 2.x mints HS256 tokens:
 *
 *   b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
 *   hdr = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
 *   pay = b64u(json.dumps(claims, separators=(",", ":")).encode())
 *   tok = hdr + b"." + pay + b"." + b64u(hmac.new(KEY, hdr + b"." + pay, hashlib.sha256).digest())
 *
 * Hostile vectors swap in a raw JSON text for the header or the claims, keep
 * the '=' padding in the signed text (*_PADDED), sign with hashlib.sha384
 * (ALG_HS384), or edit the signature part afterwards (SIG_*).
 */
#define KEY "t0ps3cret-WEBUI_SECRET_KEY-for-tests"
#define NOW 1750000000

#define VALID                                                                                      \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"PRpW223mFDuAs8opgaXSyL3LpVyYvUJ-53A_zjTAvVw"
#define NOEXP                                                                                      \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImp0aSI6IjBmOGUyZDFjLTNiNGEt" \
	"NDU5Ni04Nzc2LWE1YjRjM2QyZTFmMCIsImlhdCI6MTcwMDAwMDAwMH0.-MKkSa_Aoem2kD53hXsf_rs_"         \
	"OSc56TlFizN8VEDZc98"
#define TYP                                                                                        \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwianRpIjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMz" \
	"ZDJlMWYwIiwidHlwIjoiYXV0b21hdGlvbiJ9.t7R79fnbzb9gMFjNx7ZiIgwXk93JXKOv1wDbR5vKWGM"
#define EXPIRED                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTcwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIn0.K-"                               \
	"tcqX4S3WQ2KH0UrKSjEttoCST4Za4LDy2KxmgxfKE"
#define FLOAT_EXP                                                                                  \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMC43NX0." \
	"HjHzxgtOM_BYc0m3Lz0YTroVjBaeNtN5mQDZalmYeSM"
#define ALG_NONE                                                                                   \
	"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."                                                     \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."
#define ALG_NONE_SIGNED                                                                            \
	"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."                                                     \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ.xPWX-"     \
	"k3sZENoYo31FLs-qVRWvk8dU-JOYJKGSfwCy_k"
#define ALG_None                                                                                   \
	"eyJhbGciOiJOb25lIiwidHlwIjoiSldUIn0."                                                     \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."
#define ALG_NONE_UP                                                                                \
	"eyJhbGciOiJOT05FIiwidHlwIjoiSldUIn0."                                                     \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."
#define ALG_HS384                                                                                  \
	"eyJhbGciOiJIUzM4NCIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"YLji6MS3uAWOrDmpEi4Fj7jiMT-zoQZc6pyz-12kMfm2FsQYRUK4gIexz7n6XDZI"
#define ALG_RS256                                                                                  \
	"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"8ieRsjExANRXFuDsaJLrB1l27Y0QQBeUF3O7XaEzf0U"
#define ALG_LOWER                                                                                  \
	"eyJhbGciOiJoczI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"X0WUi3jydUl3elkXUMrfYd2cTyvP0D3Spva3OTzgDMs"
#define ALG_MISSING                                                                                \
	"eyJ0eXAiOiJKV1QifQ."                                                                      \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"xZgMzySVAVXBg_nLVDSTAmIeHFfjF5xDgnh90YwNgLk"
#define ALG_ARRAY                                                                                  \
	"eyJhbGciOlsiSFMyNTYiXSwidHlwIjoiSldUIn0."                                                 \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"s0rvcKpyOCjWE8ABMc9ooa31tM-zkH0m3ULxf7ncStk"
#define ALG_DUP                                                                                    \
	"eyJhbGciOiJIUzI1NiIsImFsZyI6Im5vbmUifQ."                                                  \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ.b4EbG-"    \
	"6lhNFNMO6cB4CIpUkks9QFS7hHCg5sMnXBvFg"
#define CRIT                                                                                       \
	"eyJhbGciOiJIUzI1NiIsImNyaXQiOlsiZXhwIl0sImV4cCI6MSwidHlwIjoiSldUIn0."                     \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"14Ny8RM9074anfuX-WGyvGI-LKWShgD74tYmDl6telI"
#define HDR_ARRAY                                                                                  \
	"WyJIUzI1NiJd."                                                                            \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"aKWBimg0spbdSTDBSEj7_ULAhfzegu1t6g_vCRNor1c"
#define HDR_PADDED                                                                                 \
	"eyJhbGciOiJIUzI1NiIsIngiOjEyfQ==."                                                        \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"Xk7sOL8n6coVQSb8khhm_BAyjG3RQmRm-P9G9gpNmfQ"
#define HDR_UNPADDED                                                                               \
	"eyJhbGciOiJIUzI1NiIsIngiOjEyfQ."                                                          \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"pS62xuq7H8ZGYS8jNMdxHNTpSIooPxtz-nV3nyEXRY0"
#define PAY_PADDED                                                                                 \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwieCI6MX0=."   \
	"3erwN8aR5EQpzHs7LwhRGQG3N_jkT-w0ijHEbbULwEI"
#define PAY_UNPADDED                                                                               \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwieCI6MX0."    \
	"KDPR0U8VB8jP-l9jNXJ1eII4CBHfA7KBoVIvj7a35G0"
#define DUP_ID                                                                                     \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InZpY3RpbSIsImlkIjoiYXR0YWNrZXIiLCJleHAiOjE5MDAwMDAwMDB9.K-"                      \
	"XW5R4DPG2OZNND5GLfbqg1RY8eHWWMXPm2JOZaDX8"
#define ID_NUM                                                                                     \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6NDIsImV4cCI6MTkwMDAwMDAwMH0."                \
	"g0X2owPIr6GSPMZJzKrQSXB-lpXLXDoGAOy3tb-_wus"
#define ID_NULL                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6bnVsbCwiZXhwIjoxOTAwMDAwMDAwfQ.W_"           \
	"AePrPgqxrbF78SHA51Z3Am_P4o9O1HcViu-YngjXE"
#define ID_EMPTY                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6IiIsImV4cCI6MTkwMDAwMDAwMH0."                \
	"sUUJHiE9996oVO8hGekO1ST0dzpSIkhU_9ugI3E_3tg"
#define ID_MISSING                                                                                 \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJleHAiOjE5MDAwMDAwMDAsImp0aSI6IjBmOGUyZDFjLTNiNGEtNDU5Ni04Nzc2LWE1YjRjM2QyZTFmMCJ9."    \
	"DmwoPGJD8PGCCOiiBmloAZCiaFTcNR5aDQtjY-C9PP8"
#define ID_UPPER                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJJRCI6ImFkbWluIiwiZXhwIjoxOTAwMDAwMDAwfQ."         \
	"CdOpnsG3ekcPWEKJRNP5iviuNEoE5i7DOVTQDHfRc7Y"
#define ID_STAR                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InVzZXI6KiIsImV4cCI6MTkwMDAwMDAwMH0.j-"      \
	"tJV3GQ_Fbxa0wVKdUwCNddUzzN6Z27c1pME3KMk-M"
#define ID_QMARK                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InVzZXI_IiwiZXhwIjoxOTAwMDAwMDAwfQ."         \
	"q4qHM5CxfQBbCUJn-cwfYZaN6_pMpSR7Pxq3sM98lX4"
#define ID_BRACKET                                                                                 \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InVbMV0iLCJleHAiOjE5MDAwMDAwMDB9."           \
	"btyZmD688SNhDhOMiGH8IpxZAHEla5YTc9pXaPicRP8"
#define ID_CRLF                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUxXHJcbkZMVVNIQUxMIiwiZXhwIjoxOTAwMDAwMDAwfQ."                                  \
	"ufDNmh0nHWVAGl5O4w4du6DQHYVmo4fXZkYUL_fpoYo"
#define ID_BRACE                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6Int1c2VyfSIsImV4cCI6MTkwMDAwMDAwMH0."        \
	"VkVBNlZ2KhPxCICPBNBHvRvSouynyVF9RJbf8qru6kA"
#define ID_SPACE                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6ImEgYiIsImV4cCI6MTkwMDAwMDAwMH0."            \
	"WRtE5XJyFJXeQnHILEkAWs6lsm1ij8Hs2bz-QM2dybI"
#define ID_NONASCII                                                                                \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6ImNhZlx1MDBlOSIsImV4cCI6MTkwMDAwMDAwMH0."    \
	"xleRpyGjlQIcLMi_yj58IRU-j0Jh5_3AJqoZH5auScg"
#define ID_NUL                                                                                     \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6ImFkbWluXHUwMDAweCIsImV4cCI6MTkwMDAwMDAwMH0.OsT2OlLPJxfkMlodt6OdrAaP7Bn-"         \
	"4fPJ136HoH6XUsg"
#define ID_ESC_BS                                                                                  \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6ImFcXHUwMDAwIiwiZXhwIjoxOTAwMDAwMDAwfQ."     \
	"WFpw-hrf0rEFXEg-wTlemFB1hpZsKK5Bi8Ht-6foWF0"
#define ID_128                                                                                     \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6ImFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh" \
	"YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh" \
	"YWFhIiwiZXhwIjoxOTAwMDAwMDAwfQ.-5awKd8Sdehv9Dj0WbfOHkzibgz8l0QwqOWEniuHe_k"
#define ID_129                                                                                     \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6ImFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh" \
	"YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh" \
	"YWFhYSIsImV4cCI6MTkwMDAwMDAwMH0.rL0uz3eyRmJBBpoUJmfKtjJRSeZ2h-3JMqYx_cm62HQ"
#define ID_CHARS                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6IkF6MDkuXzpALSIsImV4cCI6MTkwMDAwMDAwMH0."    \
	"tiPNzV6UO2S_mYVNQiYFdlFF8-JoGYwVxAu5qFiw4dA"
#define PAY_TRAILING                                                                               \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMH14."           \
	"QMei98HeXTIFOctNF_Mu6N8DvtbWmOfjYR9xBmm_BNk"
#define PAY_TWO                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMH17fQ."         \
	"h9wiwE36meWViHGW9QHf9V31Ibei3VHhEphMdeUsy_k"
#define PAY_WS                                                                                     \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMH0gDQo."        \
	"HttS2RnnMdj1eGB-V9t2eccKf_qOr30HpRVjmPL8ZxY"
#define PAY_ARRAY                                                                                  \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.W3siaWQiOiJ1LTEifV0.w8W0Dw-"                         \
	"ojEV5LWfmx33xF2AAS33mnnw_lOZvAQJQwSo"
#define PAY_TEXT                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.aGVsbG8.CCHWwMeAhu5Hvr65HVD7PfcamtZ00KlcvuGLU77cJQQ"
#define PAY_CTRL                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUtMSIsIm5hbWUiOiJhAWIiLCJleHAiOjE5MDAwMDAwMDB9."                                \
	"IRf4Pmz3qRblWatr7JAUTh3zt6rcFguZrnvhGksAHrc"
#define PAY_B64                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InUtMSJ+."                                   \
	"3dTuAEB259W1LYs0WkVjYnLIYrRl0RYzsidSl8fv8tg"
#define HDR_B64                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ+."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"PRpW223mFDuAs8opgaXSyL3LpVyYvUJ-53A_zjTAvVw"
#define EXP_STR                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InUtMSIsImV4cCI6IjE5MDAwMDAwMDAifQ."         \
	"Y2AdMhJTxZliMgJoPaZdU_cffP_JJ0hvT7EfXkuVjZ4"
#define EXP_BOOL                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InUtMSIsImV4cCI6dHJ1ZX0."                    \
	"yZ7ib387CjAy36HaGOFHqa_xYpv16eL3Bh7EdriAE4k"
#define EXP_HUGE                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InUtMSIsImV4cCI6MWU0MDB9.aKdmiLSQM3bRW_"     \
	"GO4wF_fOIRc-9KRUchOdx99L0hQrc"
#define EXP_BIG                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InUtMSIsImV4cCI6MWUxOX0."                    \
	"oiamRk2UCVhZRxEpyNtofAeMb7dFFI5XV12Hkjq8hVY"
#define IAT_STR                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwiaWF0Ijoibm93In0.BBj9E6jevUl6JwSmzfn1S6vKJG1_"     \
	"zGbA9HXsP8OhnBE"
#define IAT_FUTURE                                                                                 \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwiaWF0IjoxODAwMDAwMDAwfQ."                          \
	"KsaF00TWtQlAMWQERCIauwKQxId9LBlIYUnwIKy_HFQ"
#define NBF_FUTURE                                                                                 \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwibmJmIjoxODAwMDAwMDAwfQ.AZRJelsk-"                 \
	"N58RWkelLfbixd6SMEMxKCRix9Vazwc6x8"
#define NBF_PAST                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwibmJmIjoxNzAwMDAwMDAwfQ."                          \
	"bdxRwqSwvGRAa5KcQ0kG7YLI4RQNWf4aK62dX9UH5Ak"
#define JTI_BAD                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwianRpIjoiYV9iIn0.AnMHGbj2nh7psT8p-"                \
	"tJ7GwPk3MCFpa9PmTu0i0-RfoE"
#define JTI_NUM                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwianRpIjo3fQ." \
	"vh5cz3joH-FBKB9gFGR0t1kdTlZmw5hqrGSAAlJMbrY"
#define TYP_LONG                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwidHlwIjoidHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0" \
	"dHQifQ.6ThdPm-yU1mraDVw_2NL6nO-ALXbVsmRtFJc0-s3OD4"
#define AUD                                                                                        \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwiYXVkIjoib3RoZXItc2VydmljZSJ9."                    \
	"3jc7hF4v6YGJecmzfdgazhPFapuKmidVcmuQRQHrjLk"
#define AUD_EMPTY                                                                                  \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwiYXVkIjpbXX0.10bj5B3EUl6PfMx0uIzlJDOedFjkVp_"      \
	"lXRbIVC4BXXw"
#define AUD_NULL                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwiYXVkIjpudWxsfQ.COIiQC3m7rEILTT8APkNEbGo3aD-"      \
	"uRzRi48MH6W01Ho"
#define AUD_TRUE                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwiYXVkIjp0cnVlfQ.Q5L6uUotEVJAflIOaNUW8oH8aCmXJ_"    \
	"HdTVgo4w0bcgc"
#define AUD_LIST                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwiYXVkIjpbIngiXX0.5-94r-"                           \
	"7L3sZqk77yWYQwV1NlA9zfIR8mmaqKgLFRaqk"
#define HDR_16                                                                                     \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImswIjowLCJrMSI6MSwiazIiOjIsImszIjozLCJrNCI6NCwiazUi" \
	"OjUsIms2Ijo2LCJrNyI6NywiazgiOjgsIms5Ijo5LCJrMTAiOjEwLCJrMTEiOjExLCJrMTIiOjEyLCJrMTMiOjEz" \
	"fQ."                                                                                      \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"S1rYj4LNKHfSR7VmFeV-R-NaJ-Ax45hz3TWISNPCnHY"
#define HDR_17                                                                                     \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImswIjowLCJrMSI6MSwiazIiOjIsImszIjozLCJrNCI6NCwiazUi" \
	"OjUsIms2Ijo2LCJrNyI6NywiazgiOjgsIms5Ijo5LCJrMTAiOjEwLCJrMTEiOjExLCJrMTIiOjEyLCJrMTMiOjEz" \
	"LCJrMTQiOjE0fQ."                                                                          \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"iJJimT5g1WbyUrbW2HzCaGG16czr8TdXpeoUSyBNrqI"
#define SUB_NUM                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6InUtMSIsImV4cCI6MTkwMDAwMDAwMCwic3ViIjoxfQ." \
	"hgOG1IYF46_pqZChcELXu3NsCfnyOjp5v46EddGKu6k"
#define SPLICED                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"MwTRVuV8jCnGQ7rEhC5iVRA01OscvsofnZqV5pTp4Mo"
#define SIG_NONCANON                                                                               \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"PRpW223mFDuAs8opgaXSyL3LpVyYvUJ-53A_zjTAvVx"
#define SIG_EMPTY                                                                                  \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."
#define SIG_TRUNC1                                                                                 \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"PRpW223mFDuAs8opgaXSyL3LpVyYvUJ-53A_zjTAvV"
#define SIG_TRUNC2                                                                                 \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"PRpW223mFDuAs8opgaXSyL3LpVyYvUJ-53A_zjTAv"
#define SIG_PADDED                                                                                 \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"PRpW223mFDuAs8opgaXSyL3LpVyYvUJ-53A_zjTAvVw="
#define SIG_STD                                                                                    \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"PRpW223mFDuAs8opgaXSyL3LpVyYvUJ+53A/zjTAvVw"
#define PARTS4                                                                                     \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."          \
	"PRpW223mFDuAs8opgaXSyL3LpVyYvUJ-53A_zjTAvVw.PRpW223mFDuAs8opgaXSyL3LpVyYvUJ-53A_zjTAvVw"
#define PARTS2                                                                                     \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianRp" \
	"IjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ"
#define PARTS2_SIG                                                                                 \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.PRpW223mFDuAs8opgaXSyL3LpVyYvUJ-53A_zjTAvVw"
#define PARTS1 "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
#define NO_HEADER                                                                                  \
	".eyJpZCI6IjdiNmYzYzFlLTJkNGEtNGU4Yi05ZjEwLWExYjJjM2Q0ZTVmNiIsImV4cCI6MTkwMDAwMDAwMCwianR" \
	"pIjoiMGY4ZTJkMWMtM2I0YS00NTk2LTg3NzYtYTViNGMzZDJlMWYwIiwiaWF0IjoxNzAwMDAwMDAwfQ."         \
	"PRpW223mFDuAs8opgaXSyL3LpVyYvUJ-53A_zjTAvVw"
#define NO_PAYLOAD                                                                                 \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..PRpW223mFDuAs8opgaXSyL3LpVyYvUJ-53A_zjTAvVw"

/* The RFC 7515 A.1 example: its JWK "k" as bytes, and its token, whose
 * header and claims contain CR LF whitespace. */
static const unsigned char rfc_key[64] = {
    0x03, 0x23, 0x35, 0x4b, 0x2b, 0x0f, 0xa5, 0xbc, 0x83, 0x7e, 0x06, 0x65, 0x77, 0x7b, 0xa6, 0x8f,
    0x5a, 0xb3, 0x28, 0xe6, 0xf0, 0x54, 0xc9, 0x28, 0xa9, 0x0f, 0x84, 0xb2, 0xd2, 0x50, 0x2e, 0xbf,
    0xd3, 0xfb, 0x5a, 0x92, 0xd2, 0x06, 0x47, 0xef, 0x96, 0x8a, 0xb4, 0xc3, 0x77, 0x62, 0x3d, 0x22,
    0x3d, 0x2e, 0x21, 0x72, 0x05, 0x2e, 0x4f, 0x08, 0xc0, 0xcd, 0x9a, 0xf5, 0x67, 0xd0, 0x80, 0xa3};
#define RFC_TOKEN                                                                                  \
	"eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"                                                 \
	".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp" \
	"0cnVlfQ"                                                                                  \
	".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

/* Verifies tok[0..n) placed against a guard page, with any key. Returns NULL
 * on success or the reason; checks that the two agree with the return code. */
static const char *verify_key(const char *tok, size_t n, const void *key, size_t keylen,
                              int64_t now, int require_exp, jwt_claims *c)
{
	char *g = tap_guard(tok, n);
	const char *err = NULL;
	int rc = jwt_verify_hs256(slice_make(g, n), key, keylen, now, require_exp, c, &err);
	tap_unguard(g, n);
	if (rc == 0)
		return err ? "(success with a reason)" : NULL;
	return rc == -1 && err ? err : "(failure without a reason)";
}

static const char *verify_at(const char *tok, int64_t now, int require_exp, jwt_claims *c)
{
	return verify_key(tok, strlen(tok), KEY, sizeof(KEY) - 1, now, require_exp, c);
}

static const char *verify(const char *tok)
{
	jwt_claims c;
	return verify_at(tok, NOW, 1, &c);
}

#define OK "(accepted)"
static const struct vec {
	const char *name, *token, *err;
} vecs[] = {
    {"PyJWT-style token", VALID, OK},
    {"internal token with typ", TYP, OK},
    {"fractional exp", FLOAT_EXP, OK},
    {"id of 128 characters", ID_128, OK},
    {"id using every allowed punctuation", ID_CHARS, OK},
    {"future iat tolerated (clock skew)", IAT_FUTURE, OK},
    {"past nbf", NBF_PAST, OK},
    {"empty aud", AUD_EMPTY, OK},
    {"null aud", AUD_NULL, OK},
    {"header of 16 members", HDR_16, OK},
    {"trailing JSON whitespace", PAY_WS, OK},
    {"header needing padding, unpadded", HDR_UNPADDED, OK},
    {"payload needing padding, unpadded", PAY_UNPADDED, OK},
    /* Algorithm: configuration, never the header's choice. */
    {"alg none, no signature", ALG_NONE, "alg not HS256"},
    {"alg none, HS256 signature", ALG_NONE_SIGNED, "alg not HS256"},
    {"alg None", ALG_None, "alg not HS256"},
    {"alg NONE", ALG_NONE_UP, "alg not HS256"},
    {"alg HS384 signed with the secret", ALG_HS384, "alg not HS256"},
    {"alg RS256, HMAC with the secret (confusion)", ALG_RS256, "alg not HS256"},
    {"alg hs256 (case)", ALG_LOWER, "alg not HS256"},
    {"alg missing", ALG_MISSING, "alg not HS256"},
    {"alg as an array", ALG_ARRAY, "alg not HS256"},
    {"duplicate alg in header", ALG_DUP, "duplicate key"},
    {"crit header", CRIT, "crit header"},
    {"header not an object", HDR_ARRAY, "bad header json"},
    {"header of 17 members", HDR_17, "bad header json"},
    {"header with '=' padding", HDR_PADDED, "bad base64"},
    {"header outside the alphabet", HDR_B64, "bad base64"},
    /* Structure and signature. */
    {"4 parts", PARTS4, "malformed"},
    {"2 parts", PARTS2, "malformed"},
    {"2 parts, header.signature", PARTS2_SIG, "malformed"},
    {"1 part", PARTS1, "malformed"},
    {"empty header", NO_HEADER, "malformed"},
    {"empty payload", NO_PAYLOAD, "malformed"},
    {"empty signature", SIG_EMPTY, "empty signature"},
    {"signature truncated by 1", SIG_TRUNC1, "bad signature"},
    {"signature truncated by 2", SIG_TRUNC2, "bad signature"},
    {"signature with '=' padding", SIG_PADDED, "bad signature"},
    {"signature in the standard alphabet", SIG_STD, "bad base64"},
    {"signature with non-zero trailing bits", SIG_NONCANON, "bad base64"},
    {"payload from another token", SPLICED, "bad signature"},
    /* Payload. */
    {"payload with '=' padding", PAY_PADDED, "bad base64"},
    {"payload outside the alphabet", PAY_B64, "bad base64"},
    {"payload an array", PAY_ARRAY, "bad payload json"},
    {"payload not JSON", PAY_TEXT, "bad payload json"},
    {"raw control character", PAY_CTRL, "bad payload json"},
    {"garbage after the JSON", PAY_TRAILING, "malformed"},
    {"second object after the JSON", PAY_TWO, "malformed"},
    {"duplicate id", DUP_ID, "duplicate key"},
    {"missing id", ID_MISSING, "missing id"},
    {"ID is not id", ID_UPPER, "missing id"},
    {"numeric id", ID_NUM, "bad claim type"},
    {"null id", ID_NULL, "bad claim type"},
    {"empty id", ID_EMPTY, "bad id"},
    {"id with *", ID_STAR, "bad id"},
    {"id with ?", ID_QMARK, "bad id"},
    {"id with [ ]", ID_BRACKET, "bad id"},
    {"id with CR LF", ID_CRLF, "bad id"},
    {"id with braces", ID_BRACE, "bad id"},
    {"id with a space", ID_SPACE, "bad id"},
    {"id with non-ASCII", ID_NONASCII, "bad id"},
    {"id of 129 characters", ID_129, "bad id"},
    {"id with \\u0000", ID_NUL, "bad payload json"},
    {"id with escaped backslash then u0000", ID_ESC_BS, "bad id"},
    {"exp as a string", EXP_STR, "bad claim type"},
    {"exp as a boolean", EXP_BOOL, "bad claim type"},
    {"exp 1e400", EXP_HUGE, "bad claim type"},
    {"exp beyond int64", EXP_BIG, "bad claim type"},
    {"exp in the past", EXPIRED, "expired"},
    {"iat as a string", IAT_STR, "bad claim type"},
    {"nbf in the future", NBF_FUTURE, "not yet valid"},
    {"jti with _", JTI_BAD, "bad jti"},
    {"numeric jti", JTI_NUM, "bad claim type"},
    {"typ of 32 characters", TYP_LONG, "bad typ"},
    {"aud present", AUD, "unexpected aud"},
    {"aud true", AUD_TRUE, "unexpected aud"},
    {"aud list", AUD_LIST, "unexpected aud"},
    {"numeric sub", SUB_NUM, "bad claim type"},
};

static void test_vectors(void)
{
	for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
		const char *got = verify(vecs[i].token);
		is_str(got ? got : OK, vecs[i].err, "%s", vecs[i].name);
	}
}

static void test_claims(void)
{
	jwt_claims c;
	ok(verify_at(VALID, NOW, 1, &c) == NULL, "valid token accepted");
	is_str(c.id, "7b6f3c1e-2d4a-4e8b-9f10-a1b2c3d4e5f6", "id");
	is_str(c.jti, "0f8e2d1c-3b4a-4596-8776-a5b4c3d2e1f0", "jti");
	is_str(c.typ, "", "no typ");
	is_int(c.exp, 1900000000, "exp");
	is_int(c.iat, 1700000000, "iat");
	is_int(c.flags, JWT_HAS_EXP | JWT_HAS_IAT | JWT_HAS_JTI, "flags");

	ok(verify_at(TYP, NOW, 1, &c) == NULL, "internal token accepted");
	is_str(c.typ, "automation", "typ");
	is_int(c.flags, JWT_HAS_EXP | JWT_HAS_JTI | JWT_HAS_TYP, "typ flags");

	ok(verify_at(NOEXP, NOW, 0, &c) == NULL, "no exp accepted when not required");
	is_int(c.flags, JWT_HAS_IAT | JWT_HAS_JTI, "no exp flag");
	is_int(c.exp, 0, "exp 0 when absent");
	is_str(verify_at(NOEXP, NOW, 1, &c), "missing exp", "no exp refused when required");

	ok(verify_at(FLOAT_EXP, NOW, 1, &c) == NULL && c.exp == 1900000000,
	   "fractional exp floored");
	is_str(verify_at(FLOAT_EXP, 1900000000, 1, &c), "expired", "floored exp == now expired");

	ok(verify_at(ID_128, NOW, 1, &c) == NULL && strlen(c.id) == 128, "128-byte id kept whole");

	memset(&c, 0xaa, sizeof(c));
	ok(verify_at(ID_STAR, NOW, 1, &c) != NULL, "refused token");
	ok(c.id[0] == 0 && c.flags == 0 && c.exp == 0, "claims zeroed on failure");
	memset(&c, 0xaa, sizeof(c));
	ok(verify_at(EXPIRED, NOW, 1, &c) != NULL && c.id[0] == 0,
	   "no id leaks from expired token");
}

/* PyJWT: expired when exp <= now, no leeway. */
static void test_expiry(void)
{
	jwt_claims c;
	ok(verify_at(VALID, 1899999999, 1, &c) == NULL, "exp == now + 1 accepted");
	is_str(verify_at(VALID, 1900000000, 1, &c), "expired", "exp == now expired");
	is_str(verify_at(VALID, 1900000001, 1, &c), "expired", "exp < now expired");
	is_str(verify_at(EXPIRED, NOW, 0, &c), "expired", "expired without require_exp");
	is_str(verify_at(NBF_FUTURE, 1799999999, 1, &c), "not yet valid", "nbf == now + 1");
	ok(verify_at(NBF_FUTURE, 1800000000, 1, &c) == NULL, "nbf == now accepted");
}

static void test_keys(void)
{
	jwt_claims c;
	const char *err = "unset";
	is_str(verify_key(VALID, strlen(VALID), "other", 5, NOW, 1, &c), "bad signature",
	       "wrong key");
	is_str(verify_key(VALID, strlen(VALID), KEY, sizeof(KEY) - 2, NOW, 1, &c), "bad signature",
	       "key missing its last byte");
	is_str(verify_key(VALID, strlen(VALID), "", 0, NOW, 1, &c), "bad key", "empty key");
	ok(verify_key(VALID, strlen(VALID), KEY, sizeof(KEY) - 1, NOW, 1, &c) == NULL,
	   "the right key again after others: the kept HMAC context follows the key");
	is_str(verify_key(VALID, strlen(VALID), KEY "x", sizeof(KEY), NOW, 1, &c), "bad signature",
	       "and a key longer by one byte is another key");
	is_int(jwt_verify_hs256(SLICE_LIT(VALID), "x", 1, NOW, 1, &c, NULL), -1, "err may be NULL");
	is_int(jwt_verify_hs256(SLICE_NULL, KEY, sizeof(KEY) - 1, NOW, 1, &c, &err), -1,
	       "empty token");
	is_str(err, "malformed", "empty token is malformed");

	/* The signature layer, on a token from the RFC: it verifies, then the
	 * claims fail because the example has no id. */
	const char *t = RFC_TOKEN;
	size_t n = strlen(t);
	is_str(verify_key(t, n, rfc_key, sizeof(rfc_key), 1300819379, 1, &c), "missing id",
	       "RFC 7515 A.1 signature verifies");
	char bad[sizeof(RFC_TOKEN)];
	memcpy(bad, t, sizeof(bad));
	bad[n - 5] = bad[n - 5] == 'A' ? 'B' : 'A';
	is_str(verify_key(bad, n, rfc_key, sizeof(rfc_key), 1300819379, 1, &c), "bad signature",
	       "RFC 7515 A.1 with a changed signature");
	is_str(verify_key(t, n, rfc_key, 32, 1300819379, 1, &c), "bad signature",
	       "RFC 7515 A.1 with half the key");
}

/* Any edit to a good token refuses it: every proper prefix, and every
 * single-character substitution (canonical base64 leaves no slack). */
static void test_mutations(void)
{
	char t[sizeof(VALID)];
	size_t n = sizeof(VALID) - 1;
	jwt_claims c;
	int prefixes = 0, edits = 0;
	for (size_t i = 0; i < n; i++)
		prefixes += verify_key(VALID, i, KEY, sizeof(KEY) - 1, NOW, 1, &c) != NULL;
	is_int(prefixes, n, "every proper prefix refused");
	for (size_t i = 0; i < n; i++) {
		static const char subst[] = "A0_-.=";
		for (const char *s = subst; *s; s++) {
			if (VALID[i] == *s)
				continue;
			memcpy(t, VALID, sizeof(t));
			t[i] = *s;
			edits += verify_key(t, n, KEY, sizeof(KEY) - 1, NOW, 1, &c) == NULL;
		}
	}
	is_int(edits, 0, "no single-character substitution accepted");
}

static void test_size_cap(void)
{
	static char big[JWT_MAX_TOKEN + 2];
	jwt_claims c;
	memset(big, '!', sizeof(big));
	is_str(verify_key(big, JWT_MAX_TOKEN + 1, KEY, sizeof(KEY) - 1, NOW, 1, &c), "too large",
	       "JWT_MAX_TOKEN + 1 refused before decoding");
	is_str(verify_key(big, JWT_MAX_TOKEN, KEY, sizeof(KEY) - 1, NOW, 1, &c), "malformed",
	       "JWT_MAX_TOKEN of junk is decoded (and malformed)");

	/* Signed tokens on either side of the cap: the header and signature
	 * take 81 characters, a payload of 6083 bytes takes 8111. */
	static char json[6100];
	buf b;
	for (int extra = 0; extra < 2; extra++) {
		size_t len = 6083 + (size_t)extra;
		const char pre[] = "{\"id\":\"u-1\",\"pad\":\"";
		memset(json, 'x', len);
		memcpy(json, pre, sizeof(pre) - 1);
		memcpy(json + len - 2, "\"}", 2);
		buf_init(&b, 0);
		ok(jwt_sign_hs256(&b, slice_make(json, len), KEY, sizeof(KEY) - 1) == 0, "sign %zu",
		   len);
		is_int(b.len, JWT_MAX_TOKEN + extra, "token length");
		const char *got = verify_key(b.data, b.len, KEY, sizeof(KEY) - 1, NOW, 0, &c);
		is_str(got ? got : OK, extra ? "too large" : OK, "signed token of %zu bytes",
		       b.len);
		buf_dispose(&b);
	}
}

static void test_sign(void)
{
	static const char payload[] = "{\"id\":\"7b6f3c1e-2d4a-4e8b-9f10-a1b2c3d4e5f6\","
	                              "\"exp\":1900000000,\"jti\":\"0f8e2d1c-3b4a-4596-8776-"
	                              "a5b4c3d2e1f0\",\"iat\":1700000000}";
	jwt_claims c;
	buf b;
	buf_init(&b, 0);
	buf_append_cstr(&b, "Bearer ");
	ok(jwt_sign_hs256(&b, SLICE_LIT(payload), KEY, sizeof(KEY) - 1) == 0, "sign");
	is_mem(b.data + 7, b.len - 7, VALID, sizeof(VALID) - 1,
	       "byte for byte the token PyJWT mints");
	is_mem(b.data, 7, "Bearer ", 7, "appended after existing content");
	ok(verify_key(b.data + 7, b.len - 7, KEY, sizeof(KEY) - 1, NOW, 1, &c) == NULL,
	   "round trip verifies");
	is_str(c.id, "7b6f3c1e-2d4a-4e8b-9f10-a1b2c3d4e5f6", "round trip id");
	buf_dispose(&b);

	buf_init(&b, 100);
	buf_append_cstr(&b, "keep");
	is_int(jwt_sign_hs256(&b, SLICE_LIT(payload), KEY, sizeof(KEY) - 1), -1,
	       "sign past the buffer limit refused");
	is_mem(b.data, b.len, "keep", 4, "buffer unchanged after refusal");
	is_int(jwt_sign_hs256(&b, SLICE_LIT("{}"), "", 0), -1, "empty key refused");
	is_int(b.len, 4, "buffer unchanged after empty key");
	buf_dispose(&b);

	buf_init(&b, 0);
	ok(jwt_sign_hs256(&b, SLICE_LIT("{\"id\":\"u-1\"}"), KEY, sizeof(KEY) - 1) == 0,
	   "sign without exp");
	is_str(verify_key(b.data, b.len, KEY, sizeof(KEY) - 1, NOW, 1, &c), "missing exp",
	       "refused when exp is required");
	ok(verify_key(b.data, b.len, KEY, sizeof(KEY) - 1, NOW, 0, &c) == NULL,
	   "accepted when exp is optional");
	buf_dispose(&b);
}

/* Payloads signed here, for what only the claim reader decides: names
 * spelled with escapes, every kind of aud, numbers of any length. */
static const struct {
	const char *name, *payload, *err, *id;
} payloads[] = {
    {"escaped id value", "{\"id\":\"\\u0061b-1\"}", OK, "ab-1"},
    {"escaped claim name", "{\"\\u0069d\":\"u-2\"}", OK, "u-2"},
    {"duplicate spelled with an escape", "{\"id\":\"a\",\"i\\u0064\":\"b\"}", "duplicate key",
     NULL},
    {"duplicate unread member", "{\"id\":\"a\",\"x\":1,\"x\":2}", "duplicate key", NULL},
    {"members in any order", "{\"x\":[1,{\"id\":\"no\"}],\"exp\":1900000000,\"id\":\"u-3\"}", OK,
     "u-3"},
    {"aud 0", "{\"id\":\"a\",\"aud\":0}", OK, "a"},
    {"aud 0.0e5", "{\"id\":\"a\",\"aud\":0.0e5}", OK, "a"},
    {"aud false", "{\"id\":\"a\",\"aud\":false}", OK, "a"},
    {"aud []", "{\"id\":\"a\",\"aud\":[]}", OK, "a"},
    {"aud {}", "{\"id\":\"a\",\"aud\":{}}", OK, "a"},
    {"aud 2", "{\"id\":\"a\",\"aud\":2}", "unexpected aud", NULL},
    {"aud {\"x\":1}", "{\"id\":\"a\",\"aud\":{\"x\":1}}", "unexpected aud", NULL},
    {"aud [0]", "{\"id\":\"a\",\"aud\":[0]}", "unexpected aud", NULL},
    {"exp of 80 characters",
     "{\"id\":\"a\",\"exp\":1900000000."
     "00000000000000000000000000000000000000000000000000000000000000000001}",
     OK, "a"},
    {"exp of 80 digits",
     "{\"id\":\"a\",\"exp\":"
     "19000000000000000000000000000000000000000000000000000000000000000000000000000000}",
     "bad claim type", NULL},
    {"sub as a string", "{\"id\":\"a\",\"sub\":\"s\"}", OK, "a"},
    {"typ escaped", "{\"id\":\"a\",\"typ\":\"\\u0061uto\"}", OK, "a"},
    {"whitespace everywhere", " {\n\t\"id\" : \"a\" ,\r\n \"exp\" : 1900000000 } ", OK, "a"},
    {"garbage after it", "{\"id\":\"a\"} x", "malformed", NULL},
    {"nothing but a string", "\"id\"", "bad payload json", NULL},
    /* What PyJWT's json.loads refuses is refused here too. */
    {"exp with a leading zero", "{\"id\":\"a\",\"exp\":01900000000}", "bad payload json", NULL},
    {"member 00", "{\"id\":\"a\",\"x\":00}", "bad payload json", NULL},
    {"member -01.5", "{\"id\":\"a\",\"x\":[-01.5]}", "bad payload json", NULL},
    {"members 0, -0, 0.5, 1e01, 10, 2E-05", "{\"id\":\"a\",\"x\":[0,-0,0.5,1e01,10,2E-05]}", OK,
     "a"},
    {"digits inside a string", "{\"id\":\"007\",\"x\":\"-01\"}", OK, "007"},
    {"a byte that is not UTF-8", "{\"id\":\"a\",\"name\":\"\xff\"}", "bad payload json", NULL},
    {"an overlong UTF-8 form", "{\"id\":\"a\",\"name\":\"\xc0\xaf\"}", "bad payload json", NULL},
    {"UTF-8 in a claim",
     "{\"id\":\"a\",\"name\":\"Ren\xc3\xa9"
     "e \xf0\x9f\x98\x80\"}",
     OK, "a"},
    {"a raw tab inside a string", "{\"id\":\"a\",\"name\":\"x\ty\"}", "bad payload json", NULL},
    {"an escaped quote, then a number", "{\"id\":\"a\\\"\",\"x\":01}", "bad payload json", NULL},
};

static void test_payloads(void)
{
	for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
		jwt_claims c;
		buf b;
		buf_init(&b, 0);
		if (jwt_sign_hs256(&b, slice_cstr(payloads[i].payload), KEY, sizeof(KEY) - 1) < 0) {
			ok(0, "%s: signed", payloads[i].name);
			continue;
		}
		const char *got = verify_key(b.data, b.len, KEY, sizeof(KEY) - 1, NOW, 0, &c);
		is_str(got ? got : OK, payloads[i].err, "%s", payloads[i].name);
		if (payloads[i].id && !got)
			is_str(c.id, payloads[i].id, "%s: id", payloads[i].name);
		buf_dispose(&b);
	}
}

int main(void)
{
	test_vectors();
	test_claims();
	test_expiry();
	test_keys();
	test_mutations();
	test_size_cap();
	test_sign();
	test_payloads();
	return tap_done();
}
